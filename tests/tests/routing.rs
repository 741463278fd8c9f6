//! Routing and upstream choice end to end: hosts, templates, prefixes, rewrites, header edits,
//! round-robin over endpoints and the pool's limits, asserting on what each upstream saw.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use coregate_tests::client::Client;
use coregate_tests::harness::{Coregate, MECHANISMS, config_with, config_with_upstreams};
use coregate_tests::upstream::{Recorded, Reply, Upstream, echo, ok};

/// An upstream that answers with its own name, so the client can tell who served it.
fn named(name: &'static str) -> Upstream {
    Upstream::start(Arc::new(move |_: &Recorded| {
        Reply::Raw(ok(name.as_bytes()))
    }))
}

#[test]
fn hosts_paths_and_methods_pick_the_most_specific_route() {
    for io in MECHANISMS {
        let api = named("api");
        let wild = named("wild");
        let exact = named("exact");
        let upstreams = format!(
            "[[upstream]]\nname = \"api\"\nendpoints = [\"{}\"]\n\
             [[upstream]]\nname = \"wild\"\nendpoints = [\"{}\"]\n\
             [[upstream]]\nname = \"exact\"\nendpoints = [\"{}\"]\n",
            api.addr(),
            wild.addr(),
            exact.addr()
        );
        let routes = r#"
[[route]]
path_prefix = "/"
upstream = "api"

[[route]]
host = "*.example.com"
path_prefix = "/"
upstream = "wild"

[[route]]
host = "shop.example.com"
path = "/users/{id}/orders"
methods = ["GET"]
upstream = "exact"

[[route]]
host = "shop.example.com"
path_prefix = "/"
upstream = "wild"
"#;
        let text = config_with_upstreams(io, "0", &upstreams, routes);
        let proxy = Coregate::start(&text);
        let mut client = Client::connect(proxy.addr());
        let mut served_by = |host: &str, request_line: &str| {
            client.send(format!("{request_line}\r\nhost: {host}\r\n\r\n").as_bytes());
            client.read_response(false).unwrap().body_text()
        };
        assert_eq!(
            served_by("other.test", "GET /x HTTP/1.1"),
            "api",
            "{io}: no host route applies"
        );
        assert_eq!(
            served_by("a.example.com", "GET /x HTTP/1.1"),
            "wild",
            "{io}: wildcard host"
        );
        assert_eq!(
            served_by("A.B.Example.COM:8080", "GET /x HTTP/1.1"),
            "wild",
            "{io}: case and port ignored"
        );
        assert_eq!(
            served_by("example.com", "GET /x HTTP/1.1"),
            "api",
            "{io}: *.example.com is not example.com"
        );
        assert_eq!(
            served_by("shop.example.com", "GET /users/42/orders HTTP/1.1"),
            "exact",
            "{io}: template beats prefix"
        );
        assert_eq!(
            served_by(
                "shop.example.com",
                "POST /users/42/orders HTTP/1.1\r\ncontent-length: 0"
            ),
            "wild",
            "{io}: a less specific path that allows the method wins over 405"
        );
        assert_eq!(exact.requests()[0].target, "/users/42/orders");
    }
}

#[test]
fn prefixes_are_stripped_or_rewritten_and_paths_normalised() {
    for io in MECHANISMS {
        let upstream = Upstream::start(echo());
        let routes = r#"
[[route]]
path_prefix = "/api/"
strip_prefix = true
upstream = "up"

[[route]]
path_prefix = "/v1/"
prefix_rewrite = "/internal/v1/"
upstream = "up"

[[route]]
path = "/admin"
respond = { status = 403, body = "no\n" }

[[route]]
path_prefix = "/"
upstream = "up"
"#;
        let body = format!("endpoints = [\"{}\"]", upstream.addr());
        let proxy = Coregate::start(&config_with(io, "0", &body, routes));
        let mut client = Client::connect(proxy.addr());
        client.get("/api/users?page=2", &[]);
        client.get("/v1/items", &[]);
        client.get("/a//b/./c/../d", &[]);
        let sneaky = client.get("/api/../admin", &[]);
        assert_eq!(
            (sneaky.status, sneaky.body_text().as_str()),
            (403, "no\n"),
            "{io}: /api/../admin is /admin"
        );
        let encoded = client.get("/%61pi/%2e%2e/admin", &[]);
        assert_eq!(
            encoded.status, 403,
            "{io}: decoded dots are dot segments too"
        );
        let seen = upstream.wait_for(3);
        assert_eq!(seen[0].target, "/users?page=2", "{io}");
        assert_eq!(seen[1].target, "/internal/v1/items", "{io}");
        assert_eq!(
            seen[2].target, "/a/b/d",
            "{io}: the normalised path is forwarded"
        );
        assert_eq!(
            upstream.requests().len(),
            3,
            "{io}: nothing else went upstream"
        );
    }
}

#[test]
fn route_header_edits_apply_both_ways() {
    for io in MECHANISMS {
        let upstream = Upstream::start(Arc::new(|_: &Recorded| {
            Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nserver: origin/1.0\r\nx-powered-by: php\r\n\r\nok".to_vec())
        }));
        let routes = r#"
[[route]]
path_prefix = "/"
upstream = "up"
add_request_headers = { "x-tenant" = "blue" }
remove_request_headers = ["cookie"]
add_response_headers = { "server" = "edge" }
remove_response_headers = ["x-powered-by"]
"#;
        let body = format!("endpoints = [\"{}\"]", upstream.addr());
        let proxy = Coregate::start(&config_with(io, "0", &body, routes));
        let mut client = Client::connect(proxy.addr());
        let response = client.get("/", &["cookie: secret=1", "x-tenant: red", "accept: */*"]);
        assert_eq!(
            response.fields_named("server"),
            vec!["edge"],
            "{io}: replaced, not appended"
        );
        assert_eq!(response.field("x-powered-by"), None, "{io}");
        let seen = upstream.wait_for(1);
        assert_eq!(seen[0].field("cookie"), None, "{io}");
        assert_eq!(
            seen[0].fields_named("x-tenant"),
            vec!["blue"],
            "{io}: the client cannot supply its own copy"
        );
        assert_eq!(seen[0].field("accept"), Some("*/*"), "{io}");
    }
}

#[test]
fn endpoints_take_turns_and_pool_limits_hold() {
    for io in MECHANISMS {
        let one = named("one");
        let two = named("two");
        let body = format!(
            "endpoints = [\"{}\", \"{}\"]\nmax_requests_per_connection = 3\nidle_timeout = \"300ms\"",
            one.addr(),
            two.addr()
        );
        let routes = "[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n";
        let proxy = Coregate::start(&config_with(io, "0", &body, routes));
        let mut client = Client::connect(proxy.addr());
        let names: Vec<String> = (0..12).map(|_| client.get("/", &[]).body_text()).collect();
        for pair in names.chunks(2) {
            assert_ne!(pair[0], pair[1], "{io}: round-robin alternates: {names:?}");
        }
        assert_eq!(one.requests().len(), 6);
        assert_eq!(two.requests().len(), 6);
        // Six requests each, at most three per connection: two connections per endpoint.
        assert_eq!(
            (one.connections(), two.connections()),
            (2, 2),
            "{io}: max_requests_per_connection"
        );

        // One more request each: fresh connections, which then sit in the pool.
        client.get("/", &[]);
        client.get("/", &[]);
        assert_eq!(one.connections() + two.connections(), 6, "{io}");
        thread::sleep(Duration::from_millis(500));
        client.get("/", &[]);
        client.get("/", &[]);
        assert_eq!(
            one.connections() + two.connections(),
            8,
            "{io}: pooled connections idle past idle_timeout are not reused"
        );
    }
}
