//! A small TCP proxy for fault tests: between tsmig and a server it passes bytes through,
//! delays them, holds them (a frozen server: connections stay open, nothing moves), or cuts
//! every connection and refuses new ones (a server that is down), switchable while a job
//! runs.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does with the bytes it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Forward each chunk after this long.
    Delay(Duration),
    /// Keep every connection open and forward nothing (a frozen server, SIGSTOP).
    Hold,
    /// Close every connection and every new one at once (a server that is down).
    Cut,
}

#[derive(Default)]
struct State {
    mode: Mutex<Option<Mode>>,
    /// Both ends of every open connection, to cut them.
    open: Mutex<Vec<TcpStream>>,
    accepted: AtomicUsize,
}

impl State {
    fn mode(&self) -> Mode {
        self.mode.lock().unwrap().unwrap_or(Mode::Pass)
    }
}

/// A proxy on a free port of 127.0.0.1 to `upstream` (`host:port`).
pub struct TcpProxy {
    port: u16,
    state: Arc<State>,
}

impl TcpProxy {
    pub fn start(upstream: &str) -> TcpProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = state.clone();
        // The accept thread lives as long as the test process.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                if shared.mode() == Mode::Cut {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut open = shared.open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let state = shared.clone();
                    std::thread::spawn(move || pump(from, to, &state));
                }
            }
        });
        TcpProxy { port, state }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Switches what the proxy does; `Cut` also closes every open connection.
    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = Some(mode);
        if mode == Mode::Cut {
            for stream in self.state.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, state: &State) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        loop {
            match state.mode() {
                Mode::Pass => break,
                Mode::Delay(d) => {
                    std::thread::sleep(d);
                    break;
                }
                // A held connection keeps its bytes until the mode changes.
                Mode::Hold => std::thread::sleep(Duration::from_millis(10)),
                Mode::Cut => {
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
