//! Every metric name coregate exposes, in one place, so dashboards and code agree.

pub const REQUESTS_TOTAL: &str = "coregate_requests_total";
pub const RESPONSES_TOTAL: &str = "coregate_responses_total";
pub const REJECTED_TOTAL: &str = "coregate_rejected_total";
pub const REQUEST_DURATION: &str = "coregate_request_duration_seconds";
pub const CONNECTIONS_OPEN: &str = "coregate_client_connections_open";
pub const CONNECTIONS_ACCEPTED: &str = "coregate_client_connections_accepted_total";
pub const UPSTREAM_CONNECTS: &str = "coregate_upstream_connects_total";
pub const UPSTREAM_CONNECT_FAILURES: &str = "coregate_upstream_connect_failures_total";
pub const UPSTREAM_REUSES: &str = "coregate_upstream_reuses_total";
pub const UPSTREAM_IDLE: &str = "coregate_upstream_idle_connections";
pub const UPSTREAM_ACTIVE: &str = "coregate_upstream_active_connections";
pub const UPSTREAM_RETRIES: &str = "coregate_upstream_retries_total";
