//! The `easgate` binary: one executable, several roles (`gateway`, `wbxml`, `check-config`).
#![forbid(unsafe_code)]

fn main() {
    println!("easgate");
}
