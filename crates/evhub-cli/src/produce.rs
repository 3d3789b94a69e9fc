//! `evhub produce`: one event per input line.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use std::sync::Arc;

use evhub::{Backend, Bytes, Event};
use tokio::sync::mpsc;

use crate::cli::ProduceArgs;
use crate::error::{CliError, CliResult};
use crate::progress;

/// How long input may pause before a partial batch is sent (keeps interactive use responsive).
const PAUSE: Duration = Duration::from_millis(5);

type Line = std::io::Result<Vec<u8>>;

pub async fn run(hub: &Arc<dyn Backend>, name: &str, args: &ProduceArgs) -> CliResult {
    let (input, len): (Box<dyn Read + Send>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| {
                CliError::Io(format!("cannot open input file {}", path.display()), e)
            })?;
            let len = file.metadata().ok().map(|m| m.len());
            (Box::new(file), len)
        }
        None => (Box::new(std::io::stdin()), None),
    };
    let lines = spawn_line_reader(input);
    let producer = hub.producer(name).await?;
    let bar = match len {
        Some(len) => progress::bar(len, "producing"),
        None => progress::spinner("produced"),
    };
    let started = Instant::now();
    let result = pump(lines, &*producer, args, &bar).await;
    let close = producer.close().await;
    bar.finish_and_clear();
    let sent = result?;
    close?;
    eprintln!(
        "produced {sent} events to hub `{name}` in {:.2?}",
        started.elapsed()
    );
    Ok(())
}

/// Reads lines on a thread (stdin has no portable async reader) and hands them over.
fn spawn_line_reader(input: Box<dyn Read + Send>) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel::<Line>(4096);
    std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(64 * 1024, input);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.blocking_send(Ok(line)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    rx
}

async fn pump(
    mut lines: mpsc::Receiver<Line>,
    producer: &dyn evhub::Producer,
    args: &ProduceArgs,
    bar: &indicatif::ProgressBar,
) -> CliResult<u64> {
    let batch_size = args.batch as usize;
    let mut sent = 0u64;
    let mut stdout = std::io::stdout().lock();
    loop {
        // Wait for the first line of a batch, then take what is ready until the batch is full
        // or the input pauses.
        let Some(first) = lines.recv().await else {
            break;
        };
        let mut batch = Vec::with_capacity(batch_size.min(1024));
        let mut bytes = 0u64;
        push(&mut batch, &mut bytes, first, args)?;
        let mut done = false;
        while batch.len() < batch_size {
            let next = match lines.try_recv() {
                Ok(line) => Some(line),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout(PAUSE, lines.recv()).await {
                        Ok(line) => line,
                        Err(_paused) => break,
                    }
                }
            };
            match next {
                Some(line) => push(&mut batch, &mut bytes, line, args)?,
                None => {
                    done = true;
                    break;
                }
            }
        }
        let n = batch.len() as u64;
        let deliveries = producer.send_batch(batch).await?;
        if args.print_delivery {
            for d in &deliveries {
                let p = d.partition.map_or("-".to_owned(), |p| p.to_string());
                let o = d.offset.map_or("-".to_owned(), |o| o.to_string());
                writeln!(stdout, "{p} {o}")
                    .map_err(|e| CliError::Io("cannot write output".into(), e))?;
            }
            stdout
                .flush()
                .map_err(|e| CliError::Io("cannot write output".into(), e))?;
        }
        sent += n;
        if bar.length().is_some() {
            bar.inc(bytes);
        } else {
            bar.inc(n);
        }
        if done {
            break;
        }
    }
    producer.flush().await?;
    Ok(sent)
}

fn push(batch: &mut Vec<Event>, bytes: &mut u64, line: Line, args: &ProduceArgs) -> CliResult {
    let line = line.map_err(|e| CliError::Io("cannot read input".into(), e))?;
    *bytes += line.len() as u64 + 1;
    batch.push(to_event(line, args));
    Ok(())
}

fn to_event(line: Vec<u8>, args: &ProduceArgs) -> Event {
    let mut event = match &args.key_separator {
        Some(sep) => match find(&line, sep.as_bytes()) {
            Some(at) => {
                let payload = line[at + sep.len()..].to_vec();
                let mut key = line;
                key.truncate(at);
                Event::new(payload).with_key(key)
            }
            None => Event::new(line),
        },
        None => Event::new(line),
    };
    if let Some(key) = &args.key {
        event = event.with_key(Bytes::copy_from_slice(key.as_bytes()));
    }
    for (name, value) in &args.headers {
        event = event.with_header(name.clone(), Bytes::copy_from_slice(value.as_bytes()));
    }
    if let Some(p) = args.partition {
        event = event.with_partition(p);
    }
    event
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ProduceArgs {
        ProduceArgs {
            file: None,
            key: None,
            key_separator: None,
            headers: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            partition: Some(3),
            batch: 10,
            print_delivery: false,
        }
    }

    #[test]
    fn line_becomes_event_with_headers_in_order() {
        let mut a = args();
        a.key = Some("k".into());
        let e = to_event(b"hello".to_vec(), &a);
        assert_eq!(&e.payload[..], b"hello");
        assert_eq!(e.key.as_deref(), Some(&b"k"[..]));
        let names: Vec<_> = e.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(e.partition, Some(3));
    }

    #[test]
    fn key_separator_splits_at_first_match() {
        let mut a = args();
        a.key_separator = Some("::".into());
        let e = to_event(b"k1::v::w".to_vec(), &a);
        assert_eq!(e.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(&e.payload[..], b"v::w");
        let e = to_event(b"no-sep".to_vec(), &a);
        assert_eq!(e.key, None);
        assert_eq!(&e.payload[..], b"no-sep");
    }
}
