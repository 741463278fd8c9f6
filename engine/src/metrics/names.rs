//! Every metric name coregate exposes, in one place, so dashboards and code agree.

pub const SHARDS: &str = "coregate_shards";
pub const SHARDS_REPORTING: &str = "coregate_shards_reporting";
pub const CONFIG_GENERATION: &str = "coregate_config_generation";
pub const REQUESTS_TOTAL: &str = "coregate_requests_total";
pub const RESPONSES_TOTAL: &str = "coregate_responses_total";
pub const ROUTE_RESPONSES_TOTAL: &str = "coregate_route_responses_total";
pub const REJECTED_TOTAL: &str = "coregate_rejected_total";
pub const REQUEST_DURATION: &str = "coregate_request_duration_seconds";
pub const REQUEST_DURATION_QUANTILE: &str = "coregate_request_duration_quantile_seconds";
pub const CONNECTIONS_OPEN: &str = "coregate_client_connections_open";
pub const CONNECTIONS_ACCEPTED: &str = "coregate_client_connections_accepted_total";
pub const UPSTREAM_CONNECTS: &str = "coregate_upstream_connects_total";
pub const UPSTREAM_CONNECT_FAILURES: &str = "coregate_upstream_connect_failures_total";
pub const UPSTREAM_REUSES: &str = "coregate_upstream_reuses_total";
pub const UPSTREAM_IDLE: &str = "coregate_upstream_idle_connections";
pub const UPSTREAM_ACTIVE: &str = "coregate_upstream_active_connections";
pub const UPSTREAM_RETRIES: &str = "coregate_upstream_retries_total";
pub const BUFFERS_FREE: &str = "coregate_buffers_free";
pub const BUFFERS_TOTAL: &str = "coregate_buffers_total";
pub const RING_ENTERS: &str = "coregate_ring_enters_total";
pub const RING_COMPLETIONS: &str = "coregate_ring_completions_total";
pub const RING_IN_FLIGHT: &str = "coregate_ring_operations_in_flight";
pub const ACCESS_LOG_DROPPED: &str = "coregate_access_log_dropped_total";
pub const ACCESS_LOG_LINES_LOST: &str = "coregate_access_log_lines_lost_total";
pub const RATE_LIMIT_DECISIONS: &str = "coregate_rate_limit_decisions_total";
pub const RATE_LIMIT_EVICTIONS: &str = "coregate_rate_limit_evictions_total";
