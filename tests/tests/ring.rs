//! The shard's io_uring seen from outside, under overload: clients queued at the connection cap
//! and every ring size the configuration accepts.

use std::io::ErrorKind;
use std::thread;
use std::time::Duration;

use coregate_tests::client::Client;
use coregate_tests::harness::{Coregate, FORWARD_ALL, MECHANISMS, config};
use coregate_tests::upstream::{Upstream, echo};

/// `max_connections = 3` on one shard: three keep-alive clients hold their connections, five
/// more connect (the kernel queues them) and each sends a GET. When the three leave, every one
/// of the five is served: the cap makes clients wait in the backlog, it never resets them.
/// Before: the multishot accept took all five at once and closed those past the cap
/// (`[200, 200, 200, reset, reset]`).
#[test]
fn clients_queued_at_the_connection_cap_are_all_served() {
    for io in MECHANISMS {
        let upstream = Upstream::start(echo());
        let text = config(io, "0", upstream.addr(), FORWARD_ALL).replace(
            "buffers_per_shard = 512",
            "buffers_per_shard = 512\nmax_connections = 3",
        );
        let proxy = Coregate::start(&text);
        let held: Vec<Client> = (0..3)
            .map(|_| {
                let mut client = Client::connect(proxy.addr());
                assert_eq!(client.get("/", &[]).status, 200, "{io}");
                client
            })
            .collect();
        let queued: Vec<_> = (0..5)
            .map(|i| {
                let mut client = Client::connect(proxy.addr());
                client.send(
                    format!("GET /queued/{i} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                );
                client
            })
            .collect();
        drop(held);
        let outcomes: Vec<String> = queued
            .into_iter()
            .map(|mut client| {
                client.set_read_timeout(Duration::from_secs(10));
                match client.read_response(false) {
                    Some(response) => response.status.to_string(),
                    None => {
                        let mut byte = [0u8; 1];
                        match std::io::Read::read(&mut client.stream(), &mut byte) {
                            Err(err) if err.kind() == ErrorKind::ConnectionReset => "reset".into(),
                            other => format!("closed ({other:?})"),
                        }
                    }
                }
            })
            .collect();
        assert_eq!(outcomes, ["200"; 5], "{io}");
    }
}

/// `runtime.ring_entries = 32768`, the largest value `coregate check` accepts, runs. Before:
/// the shard could not set up its ring ("cannot set up its io_uring (Invalid argument)").
#[test]
fn the_largest_ring_the_configuration_accepts_runs() {
    for io in MECHANISMS {
        let upstream = Upstream::start(echo());
        let text = config(io, "0", upstream.addr(), FORWARD_ALL).replace(
            "buffers_per_shard = 512",
            "buffers_per_shard = 512\nring_entries = 32768",
        );
        let proxy = thread::spawn(move || {
            let proxy = Coregate::start(&text);
            let status = Client::connect(proxy.addr()).get("/", &[]).status;
            drop(proxy);
            status
        })
        .join();
        match proxy {
            Ok(status) => assert_eq!(status, 200, "{io}"),
            Err(panic) => {
                let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
                panic!("{io}: {message}");
            }
        }
    }
}
