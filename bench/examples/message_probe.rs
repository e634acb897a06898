//! A probe for `perf stat` / `perf record`: one `message_cost` variant in a loop, nothing
//! else (`message_probe VARIANT COUNT`, VARIANT one of typed1k, vec_u8, bytes1k, int).

use multiproc::Pipe;
#[path = "../src/typed.rs"]
mod typed;

use typed::{Typed1k, Typed1kBytes};

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map_or("typed1k", String::as_str);
    let n: usize = args.get(2).map_or(1_000_000, |s| s.parse().unwrap());
    match variant {
        "typed1k" => {
            let (a, b) = Pipe::<Typed1k>::new().unwrap();
            let message = Typed1k { id: 7, seq: 0, flags: 3, text: "x".repeat(1024) };
            for _ in 0..n {
                a.send(message.clone()).unwrap();
                std::hint::black_box(b.recv().unwrap());
            }
        }
        "vec_u8" => {
            let (a, b) = Pipe::<Typed1kBytes>::new().unwrap();
            let message = Typed1kBytes { id: 7, seq: 0, flags: 3, data: vec![b'x'; 1024] };
            for _ in 0..n {
                a.send(message.clone()).unwrap();
                std::hint::black_box(b.recv().unwrap());
            }
        }
        "bytes1k" => {
            let (a, b) = Pipe::<u64>::new().unwrap();
            let bytes = vec![b'x'; 1024];
            for _ in 0..n {
                a.send_bytes(&bytes).unwrap();
                std::hint::black_box(b.recv_bytes().unwrap());
            }
        }
        "int" => {
            let (a, b) = Pipe::<u64>::new().unwrap();
            for i in 0..n as u64 {
                a.send(i).unwrap();
                std::hint::black_box(b.recv().unwrap());
            }
        }
        other => panic!("unknown variant {other}"),
    }
}
