//! Criterion benchmark: what a rate-limit check and an authentication check cost per request.
//!
//! Questions it answers:
//! - `limit/*`: what does `Limiter::check` cost for a key already in the table (hash the header
//!   value, find the slot, GCRA, count), with 1,000 and 100,000 keys in the table? `same_key`
//!   repeats one key (its slot stays in cache); `spread_keys` walks all keys in a scrambled
//!   order, so at 100,000 keys (an 8 MiB table) most checks miss the CPU caches. Baseline:
//!   `naive_*`, a `HashMap<String, (f64 tokens, Instant)>` token bucket with the same keys and
//!   the same time steps, i.e. the structure a first version would use.
//! - `auth/api_key`: `ApiKeyAuth::authenticate` for a valid key among 1,000.
//! - `auth/jwt_*`: `JwtVerifier::verify` of a typical 400-byte token for HS256, RS256 (2048-bit)
//!   and ES256, and `verify_cached` of the same token once it is in the shard's cache: is the
//!   cache worth it?
//!
//! Before measuring, the bench checks with a counting allocator that limit checks of known keys
//! and API key checks allocate nothing.
//!
//! Run: `cargo bench -p coregate-bench --bench ratelimit -- --warm-up-time 1 --measurement-time 3`
//!
//! Measured on a 2-core VM shared with other builds (criterion medians, 2026-12-01; the tables
//! with their reading are in the module docs of `coregate_engine::ratelimit` and
//! `coregate_engine::auth`):
//!
//! | | 1,000 keys | 100,000 keys |
//! |---|---|---|
//! | `limit/same_key` | 25.7 ns | 25.4 ns |
//! | `limit/spread_keys` | 25.1 ns | 59.7 ns |
//! | `limit/naive_same_key` | 20.7 ns | 20.8 ns |
//! | `limit/naive_spread_keys` | 27.4 ns | 77.8 ns |
//!
//! `auth/api_key` 135 ns; `auth/jwt_hs256` 1.84 us, cached 344 ns; `auth/jwt_rs256` 20.3 us,
//! cached 461 ns; `auth/jwt_es256` 52.3 us, cached 330 ns.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use coregate_bench::{CountingAllocator, allocations};
use coregate_engine::auth::jwt::{Algorithm, JwtKey, JwtSettings, JwtVerifier, KeySet};
use coregate_engine::auth::{ApiKeyAuth, ApiKeyEntry, ApiKeySettings, ApiKeys};
use coregate_engine::ratelimit::{
    HashSeed, KeySpec, LimitKey, Limiter, LimiterSettings, Quota, Rate,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ring::{hmac, rand, signature};

/// Counts allocations so the bench can prove the hot path makes none.
#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const SIZES: [usize; 2] = [1_000, 100_000];
/// Simulated time between two checks.
const STEP_NANOS: u64 = 1_000;
// The limit: 10/s node-wide, 5/s per shard of 2, burst 100. A pass over 100,000 keys takes
// 0.1 s of simulated time, less than a key's 200 ms interval, so no key goes idle and every
// checked key is one the table knows (known keys are what is measured). Keys run into their
// limit soon, so most measured checks are refusals, which do the same work as admissions.

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key-{i:016x}-tenant")).collect()
}

/// A visiting order of `0..n` that jumps across the table (a multiplicative permutation).
fn scrambled(n: usize) -> Vec<usize> {
    let step = (0..)
        .map(|k| n / 2 + 1 + k)
        .find(|&s| gcd(s, n) == 1)
        .expect("a step coprime with n");
    (0..n).map(|i| i * step % n).collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn limiter(n: usize) -> Limiter {
    let quota = Quota::new(Rate::parse("10/s").expect("rate"), Some(100)).expect("quota");
    let mut settings =
        LimiterSettings::new(quota, KeySpec::parse("header:x-api-key").expect("key"), 2);
    // Room for every key at a load of at most one half.
    settings.keys_per_shard = 2 * n;
    Limiter::new(&settings, HashSeed::new(0x1234, 0x5678))
}

/// The baseline: a token bucket per key in a std `HashMap`, in floating point.
struct NaiveLimiter {
    buckets: HashMap<String, (f64, Instant)>,
    per_second: f64,
    burst: f64,
}

impl NaiveLimiter {
    fn check(&mut self, key: &str, now: Instant) -> bool {
        let bucket = match self.buckets.get_mut(key) {
            Some(bucket) => bucket,
            None => self
                .buckets
                .entry(key.to_owned())
                .or_insert((self.burst, now)),
        };
        let elapsed = now.saturating_duration_since(bucket.1).as_secs_f64();
        bucket.0 = (bucket.0 + elapsed * self.per_second).min(self.burst);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

fn check_no_allocation(
    limiter: &mut Limiter,
    now: &mut u64,
    keys: &[String],
    auth: &ApiKeyAuth,
    api_key: &str,
) {
    let before = allocations();
    for key in keys {
        *now += STEP_NANOS;
        black_box(limiter.check(LimitKey::Header(key.as_bytes()), *now));
    }
    for _ in 0..100 {
        black_box(auth.authenticate(Some(api_key.as_bytes()), None).ok());
    }
    let after = allocations();
    assert_eq!(after, before, "a limit or API key check allocated");
}

fn limits(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit");
    let auth = api_key_auth(1_000);
    for n in SIZES {
        let keys = keys(n);
        let order = scrambled(n);
        let mut limiter = limiter(n);
        let mut now: u64 = 1 << 40;
        for key in &keys {
            now += STEP_NANOS;
            limiter.check(LimitKey::Header(key.as_bytes()), now);
        }
        check_no_allocation(&mut limiter, &mut now, &keys, &auth, &api_key(7));
        // A bounded probe window can be full even in a sparse table; it must be rare.
        let evictions = limiter.counters().evictions;
        eprintln!(
            "{n} keys in {} slots: {evictions} evictions",
            limiter.capacity()
        );
        assert!(evictions * 1_000 < n as u64, "{evictions} evictions");

        let one = keys[n / 2].as_bytes();
        group.bench_with_input(BenchmarkId::new("same_key", n), &n, |b, _| {
            b.iter(|| {
                now += STEP_NANOS;
                black_box(limiter.check(LimitKey::Header(black_box(one)), now))
            });
        });
        let mut at = 0;
        group.bench_with_input(BenchmarkId::new("spread_keys", n), &n, |b, _| {
            b.iter(|| {
                now += STEP_NANOS;
                at = if at + 1 == n { 0 } else { at + 1 };
                let key = keys[order[at]].as_bytes();
                black_box(limiter.check(LimitKey::Header(black_box(key)), now))
            });
        });

        let mut naive = NaiveLimiter {
            buckets: HashMap::with_capacity(n),
            per_second: 5.0,
            burst: 50.0,
        };
        let mut instant = Instant::now();
        for key in &keys {
            naive.check(key, instant);
        }
        let step = Duration::from_nanos(STEP_NANOS);
        let one = keys[n / 2].as_str();
        group.bench_with_input(BenchmarkId::new("naive_same_key", n), &n, |b, _| {
            b.iter(|| {
                instant += step;
                black_box(naive.check(black_box(one), instant))
            });
        });
        group.bench_with_input(BenchmarkId::new("naive_spread_keys", n), &n, |b, _| {
            b.iter(|| {
                instant += step;
                at = if at + 1 == n { 0 } else { at + 1 };
                black_box(naive.check(black_box(&keys[order[at]]), instant))
            });
        });
    }
    group.finish();
}

fn api_key(i: usize) -> String {
    format!("ak_{i:08}_Zk3v9QmT2xW8rY5nB7cL4pH1sD6")
}

fn api_key_auth(n: usize) -> ApiKeyAuth {
    let entries = (0..n)
        .map(|i| ApiKeyEntry::new(&format!("client-{i}"), &api_key(i)).expect("entry"))
        .collect();
    ApiKeyAuth::new(
        ApiKeys::new(entries).expect("keys"),
        ApiKeySettings::default(),
    )
    .expect("auth")
}

const RSA_PRIVATE: &str = include_str!("../../engine/src/auth/testdata/rs256-private.pem");
const RSA_PUBLIC: &str = include_str!("../../engine/src/auth/testdata/rs256-public.pem");
const EC_PRIVATE: &str = include_str!("../../engine/src/auth/testdata/es256-private.pem");
const EC_PUBLIC: &str = include_str!("../../engine/src/auth/testdata/es256-public.pem");
const HS_SECRET: &[u8] = b"a benchmark secret that is long enough for HS256";
const NOW_UNIX: u64 = 1_800_000_000;

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body")
}

/// A token as an identity provider issues it: about 400 bytes.
fn token(algorithm: Algorithm, kid: &str) -> String {
    let header = format!(
        r#"{{"alg":"{}","typ":"JWT","kid":"{kid}"}}"#,
        algorithm.name()
    );
    let claims = format!(
        r#"{{"iss":"https://login.example.com/","sub":"auth0|64f1c0e2b9d3a4f57a8e1c2b","aud":["https://api.example.com","orders"],"iat":{},"exp":{},"scope":"openid profile orders:read orders:write","email":"alice@example.com","org_id":"org_9QmT2xW8rY5nB7cL"}}"#,
        NOW_UNIX - 60,
        NOW_UNIX + 3_600
    );
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let rng = rand::SystemRandom::new();
    let signature = match algorithm {
        Algorithm::Hs256 => hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, HS_SECRET),
            message.as_bytes(),
        )
        .as_ref()
        .to_vec(),
        Algorithm::Rs256 => {
            let pair = signature::RsaKeyPair::from_pkcs8(&pem_der(RSA_PRIVATE)).expect("RSA key");
            let mut out = vec![0; pair.public().modulus_len()];
            pair.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                message.as_bytes(),
                &mut out,
            )
            .expect("RSA signature");
            out
        }
        Algorithm::Es256 => signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pem_der(EC_PRIVATE),
            &rng,
        )
        .expect("EC key")
        .sign(&rng, message.as_bytes())
        .expect("EC signature")
        .as_ref()
        .to_vec(),
    };
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn verifier() -> JwtVerifier {
    let keys = KeySet::new(vec![
        JwtKey::hs256(HS_SECRET, Some("hs")).expect("HS key"),
        JwtKey::from_pem(RSA_PUBLIC.as_bytes(), Some("rsa")).expect("RSA key"),
        JwtKey::from_pem(EC_PUBLIC.as_bytes(), Some("ec")).expect("EC key"),
    ])
    .expect("key set");
    let mut settings = JwtSettings::new(keys);
    settings.issuer = Some("https://login.example.com/".to_owned());
    settings.audiences = vec!["orders".to_owned()];
    settings.rules = vec![coregate_engine::auth::jwt::ClaimRule {
        claim: "scope".to_owned(),
        check: coregate_engine::auth::jwt::ClaimCheck::Contains("orders:read".to_owned()),
    }];
    settings.forward = vec![coregate_engine::auth::jwt::ForwardClaim {
        claim: "email".to_owned(),
        header: "x-user-email".to_owned(),
    }];
    JwtVerifier::new(settings).expect("verifier")
}

fn authentication(c: &mut Criterion) {
    let mut group = c.benchmark_group("auth");
    let auth = api_key_auth(1_000);
    let key = api_key(777);
    assert_eq!(
        auth.authenticate(Some(key.as_bytes()), None),
        Ok("client-777")
    );
    group.bench_function("api_key", |b| {
        b.iter(|| {
            black_box(
                auth.authenticate(Some(black_box(key.as_bytes())), None)
                    .ok(),
            )
        });
    });

    let verifier = verifier();
    for (name, algorithm, kid) in [
        ("hs256", Algorithm::Hs256, "hs"),
        ("rs256", Algorithm::Rs256, "rsa"),
        ("es256", Algorithm::Es256, "ec"),
    ] {
        let token = token(algorithm, kid);
        assert!(
            verifier.verify(token.as_bytes(), NOW_UNIX).is_ok(),
            "{name} token verifies"
        );
        group.bench_function(format!("jwt_{name}"), |b| {
            b.iter(|| {
                black_box(
                    verifier
                        .verify(black_box(token.as_bytes()), NOW_UNIX)
                        .is_ok(),
                )
            });
        });
        let mut cache = verifier.new_cache(1_024, 300);
        group.bench_function(format!("jwt_{name}_cached"), |b| {
            b.iter(|| {
                black_box(
                    verifier
                        .verify_cached(&mut cache, black_box(token.as_bytes()), NOW_UNIX)
                        .is_ok(),
                )
            });
        });
        assert!(cache.counters().hits > 0);
    }
    group.finish();
}

criterion_group!(benches, limits, authentication);
criterion_main!(benches);
