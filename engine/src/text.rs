//! Counted nouns for every human-facing message, engine and CLI alike, so
//! that they all read "1 VM", "2 VMs" and never "1 VMs" or "VM(s)".

use std::fmt::Display;

/// `n` and the noun, singular for exactly one: `count(1, "VM")` is "1 VM",
/// `count(3, "step")` "3 steps". Nouns with an irregular plural use
/// [`count_irregular`].
pub fn count<N: Display>(n: N, noun: &str) -> String {
    format!("{n} {}", noun_for(&n, noun))
}

/// The noun alone, singular or plural for `n` (for "3/5 VMs"). Any integer
/// type: the figures come as `usize` and `u64` alike.
pub fn noun_for<N: Display>(n: N, noun: &str) -> String {
    if n.to_string() == "1" {
        noun.to_string()
    } else {
        format!("{noun}s")
    }
}

/// `n` and a noun whose plural is not "+s" ("1 entry", "2 entries").
pub fn count_irregular<N: Display>(n: N, singular: &str, plural: &str) -> String {
    format!(
        "{n} {}",
        if n.to_string() == "1" {
            singular
        } else {
            plural
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_singular_for_one_only() {
        assert_eq!(count(0, "VM"), "0 VMs");
        assert_eq!(count(1, "VM"), "1 VM");
        assert_eq!(count(2, "step"), "2 steps");
        assert_eq!(count(1u64, "event"), "1 event");
        assert_eq!(count(11u64, "event"), "11 events");
        assert_eq!(count_irregular(1, "entry", "entries"), "1 entry");
        assert_eq!(count_irregular(4, "entry", "entries"), "4 entries");
        assert_eq!(noun_for(1, "run"), "run");
        assert_eq!(noun_for(2, "run"), "runs");
    }
}
