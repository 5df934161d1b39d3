//! The little HTTP/1.1 the HTTP stand-ins (InfluxDB 2, TDengine's REST interface) speak,
//! over std's TcpListener: one thread per connection, keep-alive, request bodies by
//! Content-Length (no chunked requests, no TLS). Enough for reqwest; not a web server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// One request.
pub struct Request {
    pub method: String,
    /// Path and query, e.g. `/rest/sql/power?tz=UTC`.
    pub target: String,
    /// The Authorization header, if any.
    pub authorization: Option<String>,
    /// The Content-Encoding header, if any.
    pub content_encoding: Option<String>,
    pub body: Vec<u8>,
}

/// One answer.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Sent with its content type unless empty.
    pub body: String,
    /// More headers, e.g. `("retry-after", "1")`.
    pub headers: Vec<(&'static str, String)>,
}

/// Serves on a free port of 127.0.0.1 (returned) until the test process ends; `handle`
/// answers each request, or returns `None` to hang up without answering.
pub fn serve<F>(handle: F) -> u16
where
    F: Fn(Request) -> Option<Response> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let handle = handle.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                while let Some(request) = read_request(&mut reader) {
                    let Some(response) = handle(request) else {
                        return;
                    };
                    if writer.write_all(&encode(&response)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The next request on a connection; `None` when it closes or speaks no HTTP.
fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let mut length = 0;
    let mut authorization = None;
    let mut content_encoding = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_string()),
            "content-encoding" => content_encoding = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut words = request_line.split_whitespace();
    Some(Request {
        method: words.next().unwrap_or_default().to_string(),
        target: words.next().unwrap_or_default().to_string(),
        authorization,
        content_encoding,
        body,
    })
}

fn encode(response: &Response) -> Vec<u8> {
    let status = response.status;
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut text = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in &response.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if response.body.is_empty() {
        text.push_str("content-length: 0\r\n\r\n");
    } else {
        text.push_str(&format!(
            "content-type: {}\r\ncontent-length: {}\r\n\r\n{}",
            response.content_type,
            response.body.len(),
            response.body
        ));
    }
    text.into_bytes()
}
