fn main() {
    println!("drplan");
}
