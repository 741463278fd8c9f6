//! Graceful drain: in-flight requests finish with their whole body, idle keep-alive connections
//! are closed, new connections are refused, and the shards exit; in plain text and over TLS.

use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use coregate_tests::client::Client;
use coregate_tests::harness::{Coregate, TRANSPORTS, config};
use coregate_tests::upstream::{Recorded, Reply, Upstream, ok};

#[test]
fn drain_finishes_in_flight_requests_and_closes_idle_ones() {
    for io in TRANSPORTS {
        let big = vec![b'z'; 200_000];
        let slow_body = big.clone();
        let upstream = Upstream::start(Arc::new(move |req: &Recorded| {
            if req.target == "/slow" {
                Reply::Delayed(Duration::from_millis(600), ok(&slow_body))
            } else {
                Reply::Raw(ok(b"quick"))
            }
        }));
        let routes = "[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n";
        let proxy = Coregate::start(&config(io, "0-1", upstream.addr(), routes));
        let addr = proxy.addr();

        // An idle keep-alive connection and an in-flight slow request.
        let mut idle = Client::connect(addr);
        assert_eq!(idle.get("/quick", &[]).body, b"quick");
        let in_flight = thread::spawn(move || {
            let mut client = Client::connect(addr);
            client.get("/slow", &[])
        });
        upstream.wait_for(2);

        let started = Instant::now();
        let drainer = thread::spawn(move || proxy.shutdown(Duration::from_secs(5)));

        assert!(
            idle.is_closed(),
            "{io}: the idle connection is closed at once"
        );
        let response = in_flight.join().unwrap();
        assert_eq!(response.status, 200, "{io}");
        assert_eq!(
            response.body, big,
            "{io}: the in-flight response arrives whole"
        );
        assert_eq!(response.field("connection"), Some("close"), "{io}");
        drainer.join().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{io}: the drain ended when the work did"
        );
        assert!(
            TcpStream::connect(addr).is_err(),
            "{io}: nothing listens after the drain"
        );
    }
}
