//! Several pages fetched by a pool, the parent writing each page to a file in a callback
//! as it arrives. The example serves the pages itself, from a small HTTP server on
//! 127.0.0.1.
//!
//! Python:
//! ```python
//! def fetch(url):
//!     with urllib.request.urlopen(url) as r:
//!         return url, r.read().decode()
//!
//! def save(result):
//!     url, body = result
//!     with open(os.path.join(outdir, url.rsplit('/', 1)[1] + '.html'), 'w') as f:
//!         f.write(body)
//!     print('saved', url, len(body), 'bytes')
//!
//! if __name__ == '__main__':
//!     with Pool(4) as pool:
//!         results = [pool.apply_async(fetch, (u,), callback=save) for u in urls]
//!         for r in results:
//!             r.wait()
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use multiproc::{ApplyOptions, Pool};

fn fetch(url: String) -> (String, String) {
    let body = ureq::get(&url)
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .unwrap_or_else(|e| format!("error: {e}"));
    (url, body)
}

/// Serves `/page-N` forever from a thread of this process, on 127.0.0.1 only.
fn serve_pages() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = String::new();
            if BufReader::new(&stream).read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let body = format!(
                "<html><body><h1>{path}</h1><p>{}</p></body></html>\n",
                "served by multiproc's example ".repeat(path.len())
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let port = serve_pages()?;
    let out: PathBuf = std::env::temp_dir().join(format!("multiproc-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let urls: Vec<String> = (1..=6).map(|n| format!("http://127.0.0.1:{port}/page-{n}")).collect();

    let pool = Pool::new(4)?;
    let mut pending = Vec::new();
    for url in urls {
        let dir = out.clone();
        let save = move |(url, body): &(String, String)| {
            let name = url.rsplit('/').next().unwrap_or("page");
            let path = dir.join(format!("{name}.html"));
            match std::fs::write(&path, body) {
                Ok(()) => println!("saved {url}: {} bytes to {}", body.len(), path.display()),
                Err(e) => println!("could not save {url}: {e}"),
            }
        };
        pending.push(pool.apply_async_with(fetch, url, ApplyOptions::new().callback(save))?);
    }
    for p in pending {
        p.wait();
    }
    let files = std::fs::read_dir(&out)?.count();
    println!("{files} pages in {}", out.display());
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
