//! What touching memory left idle costs on this machine: the price of an active-expiry walk
//! over records nobody reads (issue #17, the sweep's deadline tags).
//!
//!     rustc -O bench/cold-pages.rs -o /tmp/cold-pages && /tmp/cold-pages
//!
//! Allocates 256 MB, writes every page, then after idling 0, 0, 1, 5, 15, 30 and 60 seconds
//! reads one word of every page in a random order and prints the time per page. On a bare
//! machine every round costs a TLB and cache miss (~100 ns); a virtual machine whose host
//! takes back guest pages left idle pays a host-side fault per page instead.

use std::time::{Duration, Instant};

fn main() {
    let words = (256 << 20) / 8;
    let per_page = 4096 / 8;
    let mut v: Vec<u64> = vec![0; words];
    for i in (0..words).step_by(per_page) {
        v[i] = i as u64;
    }
    let pages = words / per_page;
    let mut order: Vec<usize> = (0..pages).collect();
    let mut x: u64 = 88_172_645_463_325_252;
    for i in (1..pages).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    for idle in [0u64, 0, 1, 5, 15, 30, 60] {
        std::thread::sleep(Duration::from_secs(idle));
        let t = Instant::now();
        let mut sum = 0u64;
        for &p in &order {
            sum = sum.wrapping_add(unsafe { std::ptr::read_volatile(&v[p * per_page + 8]) });
        }
        let ns = t.elapsed().as_nanos() as f64 / pages as f64;
        println!("idle {idle:>2} s: {ns:.0} ns per page read (checksum {sum})");
        // Touch every page again, so the next round measures its own idle time.
        for i in (0..words).step_by(per_page) {
            v[i] = v[i].wrapping_add(1);
        }
    }
}
