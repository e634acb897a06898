//! An async server (tokio) that runs a crash-prone parser per request in a process pool,
//! with a per-task timeout, and answers every request: with the result, or with the typed
//! error of what went wrong (the parser panicked, crashed its process, or ran too long).
//! A crash or a hang costs one worker, which the pool replaces; the server goes on.
//!
//! Python's counterpart is `await loop.run_in_executor(ProcessPoolExecutor(), parse, req)`,
//! where a crash breaks the whole executor (`BrokenProcessPool`) and a hang has no timeout.
//!
//! The program serves twelve requests from clients of its own on a local port, prints the
//! answers in request order, and exits.

use std::time::Duration;

use multiproc::{ApplyOptions, Pool, TaskError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The unsafe parser: a C library, say, that crashes or loops on some inputs.
fn parse(input: String) -> u64 {
    match input.as_str() {
        "crash" => std::process::abort(),
        "loop" => loop {
            std::thread::sleep(Duration::from_millis(50));
        },
        "bad" => panic!("cannot parse {input:?}"),
        _ => input.bytes().map(u64::from).sum(),
    }
}

/// Answers one request line.
async fn answer(pool: &Pool, request: String) -> String {
    let options = ApplyOptions::new().timeout(Duration::from_secs(1));
    let pending = match pool.apply_async_with(parse, request, options) {
        Ok(pending) => pending,
        Err(e) => return format!("refused: {e}"),
    };
    match pending.await {
        Ok(value) => format!("ok {value}"),
        Err(TaskError::Panicked(info)) => format!("error: the parser panicked ({})", info.message),
        Err(TaskError::WorkerLost { signal, .. }) => format!("error: the parser crashed (signal {signal:?})"),
        Err(TaskError::TimedOut(t)) => format!("error: the parser ran past {t:?}"),
        Err(e) => format!("error: {e}"),
    }
}

async fn serve(listener: TcpListener, pool: &'static Pool, requests: usize) {
    let mut handlers = tokio::task::JoinSet::new();
    for _ in 0..requests {
        let Ok((stream, _)) = listener.accept().await else { break };
        handlers.spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_ok() {
                let reply = answer(pool, line.trim().to_string()).await;
                let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
            }
        });
    }
    while handlers.join_next().await.is_some() {}
}

async fn request(port: u16, body: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream.write_all(format!("{body}\n").as_bytes()).await.expect("send");
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await.expect("receive");
    reply.trim().to_string()
}

#[multiproc::main]
fn main() {
    let pool: &'static Pool = Box::leak(Box::new(Pool::new(2).expect("a pool")));
    let bodies = ["hello", "crash", "world", "loop", "bad", "async", "multiproc", "crash", "ok", "loop", "x", "yz"];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let replies = runtime.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(serve(listener, pool, bodies.len()));
        let clients: Vec<_> = bodies.iter().map(|b| tokio::spawn(request(port, b))).collect();
        let mut replies = Vec::new();
        for c in clients {
            replies.push(c.await.expect("a client"));
        }
        server.await.expect("the server");
        replies
    });
    for (body, reply) in bodies.iter().zip(&replies) {
        println!("{body:>10} -> {reply}");
    }
    assert!(replies.iter().all(|r| r.starts_with("ok ") || r.starts_with("error: ")));
    let stats = pool.stats();
    println!("served {}; workers replaced: {}", replies.len(), stats.workers_restarted);
}
