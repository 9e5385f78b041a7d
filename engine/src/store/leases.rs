//! How [`super::sled_store::SledStore`] keeps VM leases (store format 4).
//!
//! A job's leases are ONE value under `L/<job>`: the names of the VMs it
//! holds. Formats 1–3 wrote one key per VM (`l/<vm>` → job); sled costs a
//! few microseconds per key written or removed, so a 1,000-VM job spent
//! about 4 ms taking its leases at submission and as long again releasing
//! them in its last batch, both on the job's critical path. One value per
//! job is one write either way.
//!
//! Checking a new job's VMs against every other job's would then mean
//! reading every held set, so the store keeps a [`LeaseIndex`] in memory:
//! built at open from both kinds of keys, changed only after a write to
//! sled succeeded, under the store's writer lock. Per-VM keys of an older
//! store stay where they are and are released as before.
//!
//! The value: the VM count (`u32` big-endian), then per VM its name's length
//! (`u32` big-endian) and the name (UTF-8). Anything else (a short read,
//! trailing bytes, a name that is not UTF-8, an empty or repeated name) is
//! damage.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{JobId, StoreError};

/// Encodes the VMs of one job's lease set.
pub(crate) fn encode_set(vms: &[String]) -> Vec<u8> {
    let len = 4 + vms.iter().map(|vm| 4 + vm.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(vms.len() as u32).to_be_bytes());
    for vm in vms {
        out.extend_from_slice(&(vm.len() as u32).to_be_bytes());
        out.extend_from_slice(vm.as_bytes());
    }
    out
}

/// Decodes a lease set; `Err` says what is wrong with it.
pub(crate) fn decode_set(mut bytes: &[u8]) -> Result<Vec<String>, String> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err(format!("cut short in {what}"));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn be32(bytes: &mut &[u8], what: &str) -> Result<usize, String> {
        let b = take(bytes, 4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let count = be32(&mut bytes, "the VM count")?;
    // Every name takes at least 5 bytes: refuse a count the value cannot
    // hold before allocating for it.
    if count > bytes.len() / 5 {
        return Err(format!("claims {count} VMs in {} bytes", bytes.len() + 4));
    }
    let mut vms = Vec::with_capacity(count);
    let mut seen = BTreeSet::new();
    for i in 0..count {
        let len = be32(&mut bytes, "a name's length")?;
        let name = take(&mut bytes, len, "a name")?;
        let name = std::str::from_utf8(name)
            .map_err(|_| format!("VM {} of {count}: the name is not UTF-8", i + 1))?;
        if name.is_empty() || !seen.insert(name) {
            return Err(format!("VM {} of {count}: empty or repeated name", i + 1));
        }
        vms.push(name.to_string());
    }
    if !bytes.is_empty() {
        return Err(format!("{} bytes after the last VM", bytes.len()));
    }
    Ok(vms)
}

/// Who holds which VM, as the store's keys say.
#[derive(Debug, Default)]
pub(crate) struct LeaseIndex {
    /// VM → holder, sorted by VM (the order [`LeaseIndex::leases`] lists).
    holder: BTreeMap<String, JobId>,
    /// The VMs of each job's `L/<job>` value, in the value's order.
    sets: HashMap<JobId, Vec<String>>,
    /// Jobs holding per-VM keys of an older format.
    legacy: BTreeSet<JobId>,
    /// Lease keys that did not decode, or leased a VM already leased to
    /// another job: while there is one, nobody can tell which VMs are free.
    damaged: Vec<String>,
}

impl LeaseIndex {
    /// Records a per-VM key of an older format.
    pub(crate) fn add_legacy(&mut self, vm: String, job: JobId) {
        if self.conflicts(job, std::slice::from_ref(&vm)) {
            return;
        }
        self.holder.insert(vm, job);
        self.legacy.insert(job);
    }

    /// Records a job's lease set as read from its `L/<job>` value.
    pub(crate) fn add_set(&mut self, job: JobId, vms: Vec<String>) {
        if self.conflicts(job, &vms) {
            return;
        }
        for vm in &vms {
            self.holder.insert(vm.clone(), job);
        }
        self.sets.insert(job, vms);
    }

    /// Whether a VM of `vms`, read from the store as `job`'s, is leased to
    /// another job already; records that as damage.
    fn conflicts(&mut self, job: JobId, vms: &[String]) -> bool {
        let clash = vms.iter().find_map(|vm| {
            let other = *self.holder.get(vm)?;
            (other != job).then(|| format!("VM `{vm}` is leased to both job {other} and job {job}"))
        });
        match clash {
            Some(what) => {
                self.damaged.push(what);
                true
            }
            None => false,
        }
    }

    /// Records a lease key that could not be read.
    pub(crate) fn add_damaged(&mut self, what: String) {
        self.damaged.push(what);
    }

    fn check_sound(&self) -> Result<(), StoreError> {
        match self.damaged.first() {
            None => Ok(()),
            Some(first) => Err(StoreError::corrupt(
                "the store's leases",
                format!(
                    "{first}{}; `drplan store check` lists the damage, and a backup restores \
                     the store (`drplan store import`)",
                    match self.damaged.len() {
                        1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    }
                ),
            )),
        }
    }

    /// Checks that `job` may lease `vms`. Returns the job's new lease set
    /// when it changes (`None`: the job holds every VM already).
    pub(crate) fn plan_acquire(
        &self,
        job: JobId,
        vms: &[String],
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.check_sound()?;
        let mut set = self.sets.get(&job).cloned().unwrap_or_default();
        let before = set.len();
        let mut adding = BTreeSet::new();
        for vm in vms {
            match self.holder.get(vm) {
                Some(holder) if *holder != job => {
                    return Err(StoreError::LeaseHeld {
                        vm: vm.clone(),
                        holder: *holder,
                    });
                }
                Some(_) => {}
                None => {
                    if adding.insert(vm.as_str()) {
                        set.push(vm.clone());
                    }
                }
            }
        }
        Ok((set.len() > before).then_some(set))
    }

    /// Records that `job`'s `L/<job>` value now holds `set` (written).
    pub(crate) fn acquired(&mut self, job: JobId, set: Vec<String>) {
        for vm in &set {
            self.holder.insert(vm.clone(), job);
        }
        self.sets.insert(job, set);
    }

    /// Whether `job` holds per-VM keys of an older format.
    pub(crate) fn is_legacy(&self, job: JobId) -> bool {
        self.legacy.contains(&job)
    }

    /// Records that every lease of `job` was removed (written).
    pub(crate) fn released(&mut self, job: JobId) {
        self.sets.remove(&job);
        self.legacy.remove(&job);
        self.holder.retain(|_, holder| *holder != job);
    }

    /// Every lease as (VM, holder), sorted by VM.
    pub(crate) fn leases(&self) -> Result<Vec<(String, JobId)>, StoreError> {
        self.check_sound()?;
        Ok(self
            .holder
            .iter()
            .map(|(vm, job)| (vm.clone(), *job))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::proptest_cases(256), ..ProptestConfig::default() })]

        #[test]
        fn a_set_round_trips(set in proptest::collection::btree_set("[a-z0-9é-]{1,12}", 0..20)) {
            let vms: Vec<String> = set.into_iter().collect();
            prop_assert_eq!(decode_set(&encode_set(&vms)).unwrap(), vms);
        }

        #[test]
        fn damage_is_an_error_never_a_panic(
            set in proptest::collection::btree_set("[a-z]{1,6}", 1..6),
            cut in 0usize..64,
            flip in 0usize..64,
            extra in proptest::collection::vec(any::<u8>(), 0..3),
        ) {
            let vms: Vec<String> = set.into_iter().collect();
            let good = encode_set(&vms);
            let mut cut_short = good.clone();
            cut_short.truncate(cut % good.len());
            prop_assert!(decode_set(&cut_short).is_err());
            let mut flipped = good.clone();
            let at = flip % good.len();
            flipped[at] ^= 0xff;
            // A flipped byte may still decode (a different name); it must
            // never panic or claim the original set.
            if let Ok(other) = decode_set(&flipped) {
                prop_assert_ne!(other, vms.clone());
            }
            let mut longer = good;
            longer.extend_from_slice(&extra);
            prop_assert_eq!(decode_set(&longer).is_ok(), extra.is_empty());
        }
    }

    #[test]
    fn a_hostile_count_is_refused_before_allocating() {
        let mut v = u32::MAX.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0, 0, 1, b'a']);
        assert!(decode_set(&v).unwrap_err().contains("claims"));
    }

    #[test]
    fn a_repeated_name_is_damage() {
        let v = encode_set(&names(&["vm1", "vm1"]));
        assert!(decode_set(&v).unwrap_err().contains("repeated"));
    }

    #[test]
    fn acquiring_checks_holders_and_grows_the_set() {
        let mut ix = LeaseIndex::default();
        let (a, b) = (JobId(1), JobId(2));
        let set = ix.plan_acquire(a, &names(&["vm1", "vm2", "vm1"])).unwrap();
        assert_eq!(set, Some(names(&["vm1", "vm2"])));
        ix.acquired(a, set.unwrap());
        // Again, or a subset: nothing to write.
        assert_eq!(ix.plan_acquire(a, &names(&["vm2"])).unwrap(), None);
        // More VMs: the whole new set.
        assert_eq!(
            ix.plan_acquire(a, &names(&["vm3"])).unwrap(),
            Some(names(&["vm1", "vm2", "vm3"]))
        );
        let err = ix.plan_acquire(b, &names(&["vm9", "vm2"])).unwrap_err();
        assert!(
            matches!(&err, StoreError::LeaseHeld { vm, holder } if vm == "vm2" && *holder == a),
            "{err:?}"
        );
        ix.add_legacy("old".into(), b);
        assert!(ix.is_legacy(b) && !ix.is_legacy(a));
        assert_eq!(
            ix.leases().unwrap(),
            vec![("old".into(), b), ("vm1".into(), a), ("vm2".into(), a)]
        );
        ix.released(a);
        assert_eq!(ix.leases().unwrap(), vec![("old".into(), b)]);
        assert_eq!(
            ix.plan_acquire(b, &names(&["vm2"])).unwrap(),
            Some(names(&["vm2"]))
        );
    }

    #[test]
    fn damage_refuses_every_acquisition_and_listing() {
        let mut ix = LeaseIndex::default();
        ix.add_set(JobId(1), names(&["vm1"]));
        ix.add_set(JobId(2), names(&["vm1"]));
        let err = ix.plan_acquire(JobId(3), &names(&["other"])).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("both job"), "{err}");
        assert!(ix.leases().is_err());
    }
}
