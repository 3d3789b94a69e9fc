//! Storage under crashes, with the emulator binary as a child process:
//! SIGKILL during a write burst loses no acknowledged event (fsync
//! `always`), a corrupt record in the middle of a segment stops the start
//! with a clear message and exit code 3, and a torn tail is cut.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use fe2o3_amqp::{types::messaging::Message, Sender};
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};
use support::*;

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_write_burst_loses_no_acknowledged_event() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_str().unwrap().to_string();
        let args = [
            "--hub",
            "burst:1",
            "--data-dir",
            &data_dir,
            "--fsync",
            "always",
        ];
        let mut emulator = ChildEmulator::start(&args);
        let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut writers = Vec::new();
        for writer in 0..3 {
            let endpoint = emulator.endpoint();
            let acknowledged = acknowledged.clone();
            writers.push(tokio::spawn(async move {
                let Ok((_connection, mut session)) =
                    authenticated_session(&endpoint, "burst").await
                else {
                    return;
                };
                let Ok(mut sender) =
                    Sender::attach(&mut session, format!("w{writer}"), "burst/Partitions/0").await
                else {
                    return;
                };
                for n in 0.. {
                    let text = format!("w{writer}-{n}");
                    match sender
                        .send(Message::builder().value(text.clone()).build())
                        .await
                    {
                        Ok(outcome) if outcome.is_accepted() => {
                            acknowledged.lock().unwrap().push(text)
                        }
                        _ => return,
                    }
                }
            }));
        }
        // Let the burst run, then kill the process in the middle of it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        emulator.kill9();
        // Sends in flight at the kill never get an outcome: stop waiting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for writer in writers {
            writer.abort();
        }
        let acknowledged = acknowledged.lock().unwrap().clone();
        assert!(
            acknowledged.len() > 50,
            "burst too small: {}",
            acknowledged.len()
        );

        let emulator = ChildEmulator::start(&args);
        let stored = read_all_strings(&emulator.endpoint(), "burst", Duration::from_secs(2)).await;
        let stored_set: HashSet<&String> = stored.iter().collect();
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|t| !stored_set.contains(t))
            .collect();
        assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
        eprintln!(
            "SIGKILL burst: {} acknowledged, {} stored after restart, 0 lost",
            acknowledged.len(),
            stored.len()
        );
        // Appending continues after the recovered tail.
        authenticated_send(&emulator.endpoint(), "burst", "after-restart")
            .await
            .unwrap();
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_record_in_the_middle_refuses_to_start() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_str().unwrap().to_string();
        let args = ["--hub", "store:1", "--data-dir", &data_dir];
        let mut emulator = ChildEmulator::start(&args);
        for n in 0..5 {
            authenticated_send(&emulator.endpoint(), "store", &format!("event-{n}"))
                .await
                .unwrap();
        }
        emulator.kill9();
        let partition = data.path().join("store").join("0");
        let segment = segment_files(&partition).pop().expect("a segment file");
        let mut bytes = std::fs::read(&segment).unwrap();
        // Flip a byte inside the second record's payload (records are far
        // smaller than a third of the file).
        let middle = bytes.len() / 3;
        bytes[middle] ^= 0x5a;
        std::fs::write(&segment, &bytes).unwrap();

        let (code, stderr) = start_failure(&args);
        assert_eq!(code, Some(3), "stderr: {stderr}");
        assert!(stderr.contains("corrupt event store"), "{stderr}");
        assert!(stderr.contains("refusing to start"), "{stderr}");
        assert_eq!(std::fs::read(&segment).unwrap(), bytes, "nothing was cut");
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_cut_at_restart() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_str().unwrap().to_string();
        let args = ["--hub", "torn:1", "--data-dir", &data_dir];
        let mut emulator = ChildEmulator::start(&args);
        for n in 0..3 {
            authenticated_send(&emulator.endpoint(), "torn", &format!("event-{n}"))
                .await
                .unwrap();
        }
        emulator.kill9();
        let partition = data.path().join("torn").join("0");
        let segment = segment_files(&partition).pop().unwrap();
        let complete = std::fs::metadata(&segment).unwrap().len();
        // Half of a record header and payload, as an interrupted write leaves.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        std::io::Write::write_all(&mut file, &[0, 0, 0, 90, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        drop(file);
        let emulator = ChildEmulator::start(&args);
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), complete);
        let stored = read_all_strings(&emulator.endpoint(), "torn", Duration::from_secs(1)).await;
        assert_eq!(stored, ["event-0", "event-1", "event-2"]);
    })
    .await
    .expect("bounded");
}
