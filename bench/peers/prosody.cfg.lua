-- Prosody for natter's benchmark (scripts/bench-peers fills in the @…@
-- placeholders). Private data directory and loopback port; no TLS (the
-- load generator speaks plaintext on loopback to every server alike); no
-- traffic shaping (mod_limits is not loaded); in-band registration open
-- so that the generator creates the same accounts as on natter.

-- The benchmark starts servers as root on a throwaway machine; Prosody
-- refuses that unless told.
run_as_root = true
pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"
certificates = "@DIR@/certs"
log = { warn = "@DIR@/prosody.log" }

-- Client-to-server only, on loopback.
c2s_ports = { @PORT@ }
c2s_interfaces = { "127.0.0.1" }
modules_disabled = { "s2s" }

modules_enabled = {
	"roster"; "saslauth"; "disco"; "ping"; "register"; "mam";
}

-- As many pending connections as natter's listener (tokio's 1024), for
-- log-in bursts and reconnect storms.
network_settings = { tcp_backlog = 1024 }

c2s_require_encryption = false
allow_unencrypted_plain_auth = true
allow_registration = true
-- Loopback is on mod_register_limits' whitelist already; no throttling.
min_seconds_between_registrations = 0

-- SCRAM-SHA-1 with 4096 iterations, as natter's benchmark configures.
authentication = "internal_hashed"
default_iteration_count = 4096

-- Storage (scripts/bench-peers --peer-storage): "sql" is the same choice
-- as natter's run, SQLite (Prosody's defaults: rollback journal,
-- synchronous=FULL, one transaction per archived message); "default" is
-- Prosody's own default, flat files written without fsync.
storage = "sql" --@sql
sql = { driver = "SQLite3", database = "prosody.sqlite" } --@sql
storage = "internal" --@default
-- Every chat message archived (XEP-0313), as natter stores every one.
default_archive_policy = true
archive_expires_after = "never"

VirtualHost "@DOMAIN@"
