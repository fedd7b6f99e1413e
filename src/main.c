/* main.c — the `weft` command: flags and environment, start-up, graceful
 * shutdown.
 *
 * Every flag has an environment variable (WEFT_ + upper-case name with '_'),
 * flags win over the environment. SIGTERM/SIGINT: stop accepting, wait for
 * in-flight appends to be acknowledged, close connections, flush and
 * checkpoint the store, exit 0.
 */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/server.h"
#include "router.h"
#include <sodium.h>

#include "auth/auth.h"
#include "util/log.h"

#define WEFT_VERSION "0.1.0"

typedef enum opt_kind { OPT_STR, OPT_INT, OPT_SIZE, OPT_DURATION } opt_kind;

typedef struct option_def {
    const char *name;
    opt_kind kind;
    const char *def;
    const char *help;
    const char *value; /* resolved */
} option_def;

static option_def options[] = {
    {"host", OPT_STR, "127.0.0.1", "address to listen on", NULL},
    {"port", OPT_INT, "4437", "TCP port", NULL},
    {"data-dir", OPT_STR, "./weft-data", "directory for the embedded storage", NULL},
    {"durability", OPT_STR, "fsync",
     "fsync: acknowledge appends after fdatasync (group commit); none: after write(2) only — "
     "survives a process crash but not power loss", NULL},
    {"checkpoint-size", OPT_SIZE, "64MiB",
     "WAL bytes between checkpoints; with more streams written between two than this / 16KiB, "
     "16KiB per stream, up to 8 x this. Recovery replays up to that much. Disk use: 2.5 x "
     "this, up to about 11 x", NULL},
    {"threads", OPT_INT, "0", "event-loop threads (0 = one per CPU core)", NULL},
    {"long-poll-timeout", OPT_DURATION, "30s", "how long a long-poll waits for data", NULL},
    {"sse-max-duration", OPT_DURATION, "60s", "SSE connections are closed after this (clients reconnect)", NULL},
    {"max-body", OPT_SIZE, "64MiB", "largest request body", NULL},
    {"max-header-bytes", OPT_SIZE, "16KiB", "largest request head (request line + headers)", NULL},
    {"max-url-bytes", OPT_SIZE, "8KiB", "longest request target", NULL},
    {"max-connections", OPT_INT, "18000", "concurrent client connections", NULL},
    {"max-streams", OPT_INT, "100000000", "streams that may exist at once", NULL},
    {"read-chunk", OPT_SIZE, "4MiB", "largest body of one catch-up read response", NULL},
    {"json-max-depth", OPT_INT, "128", "deepest JSON nesting accepted in JSON streams", NULL},
    {"max-sessions", OPT_INT, "1000000", "sessions that may exist at once", NULL},
    {"session-max-event", OPT_SIZE, "1MiB",
     "largest session request body: one message, chunk batch or run", NULL},
    {"session-max-object", OPT_SIZE, "256KiB", "largest shared object of a session, as JSON", NULL},
    {"presence-grace", OPT_DURATION, "15s",
     "a session member whose last connection closed leaves after this (a refresh does not flap)",
     NULL},
    {"session-compact-bytes", OPT_SIZE, "4MiB",
     "a session log that grew past this and to twice its state starts a new generation from a "
     "snapshot (older offsets then answer 410: attach again)", NULL},
    {"run-lease", OPT_DURATION, "30s",
     "a run with no chunk or heartbeat from its agent for this long ends with reason error", NULL},
    {"auth-secret-file", OPT_STR, "",
     "file holding the HS256 secret (at least 32 bytes) that capability tokens are signed with; "
     "with it (or --auth-jwks-file) every request needs a token", NULL},
    {"auth-jwks-file", OPT_STR, "", "JWKS file of Ed25519 public keys for EdDSA capability tokens", NULL},
    {"auth-leeway", OPT_DURATION, "60s", "clock skew allowed on a token's exp and nbf", NULL},
    {"public-url", OPT_STR, "",
     "where clients reach this server (https://weft.example.com): the base of webhook callback "
     "and JWKS URLs; default: http:// and the request's Host", NULL},
    {"webhook-key-file", OPT_STR, "",
     "Ed25519 seed (32 bytes) that webhooks are signed with, created if missing; default: "
     "webhook-signing.key in --data-dir", NULL},
    {"webhook-allow-private", OPT_STR, "off",
     "on | off: webhooks to private, link-local and reserved addresses, and plain http to any host "
     "(loopback is always allowed)", NULL},
    {"webhook-timeout", OPT_DURATION, "10s", "one webhook delivery attempt (then it is retried)", NULL},
    {"max-subscriptions", OPT_INT, "10000", "subscriptions that may exist at once", NULL},
    {"database-url", OPT_STR, "",
     "Postgres to sync shapes from (postgres://user@host/db; needs wal_level = logical): serves "
     "Electric's /v1/shape API (docs/shapes.md)", NULL},
    {"shape-publication", OPT_STR, "weft_publication", "Postgres publication for shapes (created if missing)", NULL},
    {"shape-slot", OPT_STR, "weft_slot", "Postgres logical replication slot for shapes (created if missing)", NULL},
    {"request-timeout", OPT_DURATION, "30s", "time to receive a whole request once it began", NULL},
    {"idle-timeout", OPT_DURATION, "120s", "keep-alive connections idle this long are closed", NULL},
    {"write-timeout", OPT_DURATION, "60s", "clients that stop reading a response are dropped", NULL},
    {"log-level", OPT_STR, "error", "error | warn | info | debug (debug logs every request)", NULL},
    {"cors", OPT_STR, "on", "on | off: CORS headers for browser clients", NULL},
    {"io-uring", OPT_STR, "on",
     "on | off: read from and write to many sockets in one io_uring system call (falls "
     "back to read and writev where io_uring is unavailable)", NULL},
};
#define NOPTIONS (sizeof options / sizeof options[0])

/* "long-poll-timeout" -> "WEFT_LONG_POLL_TIMEOUT". */
static void env_name(const option_def *o, char *env, size_t size) {
    size_t k = (size_t)snprintf(env, size, "WEFT_");
    for (const char *p = o->name; *p && k + 1 < size; p++)
        env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    env[k] = 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "weft %s — durable streams server\n\n"
            "Usage:\n"
            "  weft serve [options]   run the server\n"
            "  weft token --sub ID --caps JSON [--ttl 1h] [--secret-file F]\n"
            "                         mint a capability token for development (HS256)\n"
            "  weft version           print the version\n"
            "  weft --help            this text\n\n"
            "Options (each also read from the environment variable shown):\n",
            WEFT_VERSION);
    for (size_t i = 0; i < NOPTIONS; i++) {
        char env[64];
        env_name(&options[i], env, sizeof env);
        fprintf(f, "  --%-20s %s\n  %-22s   [%s, default %s]\n", options[i].name, options[i].help, "",
                env, options[i].def);
    }
    fprintf(f,
            "\nSizes take B, KiB, MiB, GiB (or k, m, g); durations take ms, s, m, h (plain numbers are seconds).\n"
            "Streams are served under /v1/stream/<path>, sessions under /v1/session/<id>\n"
            "(docs/sessions.md), subscriptions under /v1/stream/__ds/ (docs/subscriptions.md).\n");
}

static option_def *find_option(const char *name, size_t n) {
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].name) == n && strncmp(options[i].name, name, n) == 0) return &options[i];
    return NULL;
}

static bool parse_number(const char *s, unsigned long long *num, const char **rest) {
    if (!isdigit((unsigned char)*s)) return false;
    errno = 0;
    char *end;
    *num = strtoull(s, &end, 10);
    if (errno) return false;
    *rest = end;
    return true;
}

static bool parse_size(const char *s, unsigned long long *out) {
    unsigned long long v;
    const char *u;
    if (!parse_number(s, &v, &u)) return false;
    unsigned long long mul = 1;
    if (!*u || !strcasecmp(u, "b")) mul = 1;
    else if (!strcasecmp(u, "k") || !strcasecmp(u, "kb") || !strcasecmp(u, "kib")) mul = 1ull << 10;
    else if (!strcasecmp(u, "m") || !strcasecmp(u, "mb") || !strcasecmp(u, "mib")) mul = 1ull << 20;
    else if (!strcasecmp(u, "g") || !strcasecmp(u, "gb") || !strcasecmp(u, "gib")) mul = 1ull << 30;
    else return false;
    *out = v * mul;
    return true;
}

static bool parse_duration_ms(const char *s, unsigned long long *out) {
    unsigned long long v;
    const char *u;
    if (!parse_number(s, &v, &u)) return false;
    if (!*u || !strcmp(u, "s")) *out = v * 1000;
    else if (!strcmp(u, "ms")) *out = v;
    else if (!strcmp(u, "m")) *out = v * 60000;
    else if (!strcmp(u, "h")) *out = v * 3600000;
    else return false;
    return true;
}

static unsigned long long opt_num(const char *name) {
    option_def *o = find_option(name, strlen(name));
    unsigned long long v = 0;
    const char *rest;
    if (o->kind == OPT_SIZE) parse_size(o->value, &v);
    else if (o->kind == OPT_DURATION) parse_duration_ms(o->value, &v);
    else parse_number(o->value, &v, &rest);
    return v;
}

static const char *opt_str(const char *name) { return find_option(name, strlen(name))->value; }

/* 1 for "on", 0 for "off"; otherwise says so and returns -1. */
static int opt_on_off(const char *name) {
    const char *v = opt_str(name);
    if (!strcmp(v, "on")) return 1;
    if (!strcmp(v, "off")) return 0;
    fprintf(stderr, "weft: --%s must be on or off\n", name);
    return -1;
}

static bool option_valid(const option_def *o, const char *v) {
    unsigned long long x;
    const char *rest;
    switch (o->kind) {
    case OPT_INT: return parse_number(v, &x, &rest) && !*rest;
    case OPT_SIZE: return parse_size(v, &x);
    case OPT_DURATION: return parse_duration_ms(v, &x);
    default: return true;
    }
}

static int parse_args(int argc, char **argv) {
    for (size_t i = 0; i < NOPTIONS; i++) {
        char env[64];
        env_name(&options[i], env, sizeof env);
        const char *v = getenv(env);
        options[i].value = v && *v ? v : options[i].def;
        if (!option_valid(&options[i], options[i].value)) {
            fprintf(stderr, "weft: invalid value '%s' for %s\n", options[i].value, env);
            return -1;
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "weft: unexpected argument '%s' (see weft --help)\n", a);
            return -1;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        option_def *o = find_option(a, n);
        if (!o) {
            fprintf(stderr, "weft: unknown option '--%.*s' (see weft --help)\n", (int)n, a);
            return -1;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "weft: --%s needs a value\n", o->name);
            return -1;
        }
        if (!option_valid(o, v)) {
            fprintf(stderr, "weft: invalid value '%s' for --%s\n", v, o->name);
            return -1;
        }
        o->value = v;
    }
    return 0;
}

/* A whole small file (a secret), without a final newline; NULL with a message. */
static uint8_t *read_secret(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "weft: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    uint8_t *b = malloc(4097);
    size_t n = b ? fread(b, 1, 4097, f) : 0;
    fclose(f);
    if (!b || n > 4096) {
        fprintf(stderr, "weft: %s: a secret of at most 4 KiB expected\n", path);
        free(b);
        return NULL;
    }
    if (n && b[n - 1] == '\n') n--; /* one final newline, as an editor leaves it */
    if (n && b[n - 1] == '\r') n--;
    if (n == 0) {
        fprintf(stderr, "weft: %s is empty: a secret of at least 32 bytes expected\n", path);
        free(b);
        return NULL;
    }
    *len = n;
    return b;
}

/* Capability tokens from --auth-secret-file / --auth-jwks-file; *a stays
 * NULL (open to all, with a warning) when neither is given. */
static int open_auth(auth **a) {
    const char *secret_path = opt_str("auth-secret-file"), *jwks = opt_str("auth-jwks-file");
    *a = NULL;
    if (!*secret_path && !*jwks) {
        fprintf(stderr, "weft: warning: no --auth-secret-file or --auth-jwks-file: anyone who can reach "
                        "this server may read and write everything\n");
        return 0;
    }
    size_t len = 0;
    uint8_t *secret = *secret_path ? read_secret(secret_path, &len) : NULL;
    if (*secret_path && !secret) return -1;
    char err[512];
    *a = auth_open(secret, len, *jwks ? jwks : NULL, (int)(opt_num("auth-leeway") / 1000), err, sizeof err);
    if (secret) sodium_memzero(secret, len);
    free(secret);
    if (!*a) fprintf(stderr, "weft: capability tokens: %s\n", err);
    return *a ? 0 : -1;
}

/* weft token --sub ID --caps JSON [--ttl 1h] [--secret-file F]: an HS256
 * token for development. */
static int cmd_token(int argc, char **argv) {
    const char *sub = NULL, *caps = NULL, *ttl = "1h", *file = getenv("WEFT_AUTH_SECRET_FILE");
    bool bad = argc % 2 != 0;
    for (int i = 0; i + 1 < argc && !bad; i += 2) {
        if (!strcmp(argv[i], "--sub")) sub = argv[i + 1];
        else if (!strcmp(argv[i], "--caps")) caps = argv[i + 1];
        else if (!strcmp(argv[i], "--ttl")) ttl = argv[i + 1];
        else if (!strcmp(argv[i], "--secret-file")) file = argv[i + 1];
        else bad = true;
    }
    unsigned long long ttl_ms = 0;
    if (bad || !sub || !caps || !file || !*file || !parse_duration_ms(ttl, &ttl_ms) || ttl_ms < 1000) {
        fprintf(stderr, "usage: weft token --sub CLIENT_ID --caps '{\"/v1/session/trip-*\": [\"read\", \"write\"]}' "
                        "[--ttl 1h] [--secret-file F (or WEFT_AUTH_SECRET_FILE)]\n"
                        "capabilities: read write create delete presence objects cancel subscribe admin\n");
        return 2;
    }
    size_t len;
    uint8_t *secret = read_secret(file, &len);
    if (!secret) return 1;
    char err[512];
    char *tok = len >= 32 ? auth_token_mint(secret, len, sub, caps, (int64_t)time(NULL) + (int64_t)(ttl_ms / 1000),
                                            err, sizeof err)
                          : NULL;
    if (len < 32) snprintf(err, sizeof err, "the secret in %s has %zu bytes: use at least 32", file, len);
    sodium_memzero(secret, len);
    free(secret);
    if (!tok) {
        fprintf(stderr, "weft token: %s\n", err);
        return 2;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}

static int serve(void) {
    int lvl = log_level_parse(opt_str("log-level"));
    if (lvl < 0) {
        fprintf(stderr, "weft: --log-level must be error, warn, info or debug\n");
        return 2;
    }
    log_threshold = (log_level)lvl;
    const char *dur = opt_str("durability");
    store_durability durability;
    if (!strcmp(dur, "fsync")) durability = STORE_DURABLE;
    else if (!strcmp(dur, "none")) durability = STORE_NOSYNC;
    else {
        fprintf(stderr, "weft: --durability must be fsync or none\n");
        return 2;
    }
    uint64_t checkpoint_bytes = opt_num("checkpoint-size");
    if (checkpoint_bytes < (1u << 20)) {
        fprintf(stderr, "weft: --checkpoint-size must be at least 1MiB\n");
        return 2;
    }
    int cors = opt_on_off("cors"), io_uring = opt_on_off("io-uring"),
        allow_private = opt_on_off("webhook-allow-private");
    if (cors < 0 || io_uring < 0 || allow_private < 0) return 2;
    streams_limits limits = {
        .long_poll_timeout_ms = (unsigned)opt_num("long-poll-timeout"),
        .sse_max_duration_ms = (unsigned)opt_num("sse-max-duration"),
        .read_chunk = opt_num("read-chunk") ? opt_num("read-chunk") : 1,
        .json_max_depth = (int)opt_num("json-max-depth"),
        .max_streams = opt_num("max-streams"),
        .max_path = opt_num("max-url-bytes"),
        .cors = cors,
    };

    /* Signals are taken synchronously by this thread only. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());

    char err[512];
    const char *dir = opt_str("data-dir");
    streams_config scfg = {
        .dir = dir,
        .durability = durability,
        .checkpoint_bytes = checkpoint_bytes,
        .limits = limits,
    };
    streams *st = streams_open(&scfg, err, sizeof err);
    if (!st) {
        fprintf(stderr, "weft: cannot open data directory %s: %s\n", dir, err);
        return 1;
    }
    sessions_limits slimits = {
        .max_event_bytes = opt_num("session-max-event"),
        .run_lease_ms = (unsigned)opt_num("run-lease"),
        .max_sessions = (unsigned)opt_num("max-sessions"),
        .max_object_bytes = opt_num("session-max-object"),
        .presence_grace_ms = (unsigned)opt_num("presence-grace"),
        .compact_bytes = opt_num("session-compact-bytes"),
    };
    char key_file[4096];
    snprintf(key_file, sizeof key_file, "%s", *opt_str("webhook-key-file") ? opt_str("webhook-key-file") : "");
    if (!*key_file) snprintf(key_file, sizeof key_file, "%s/webhook-signing.key", dir);
    subs_config subcfg = {
        .key_file = key_file,
        .public_url = opt_str("public-url"),
        .allow_private = allow_private,
        .webhook_timeout_ms = (unsigned)opt_num("webhook-timeout"),
        .max_subscriptions = (unsigned)opt_num("max-subscriptions"),
    };
    router rt = {.st = st};
    if (!(rt.subs = subs_open(st, &subcfg, err, sizeof err))) {
        fprintf(stderr, "weft: subscriptions: %s\n", err);
        streams_close(st);
        return 1;
    }
    rt.ss = sessions_open(st, rt.subs, &slimits);
    shapes_config shcfg = {
        .database_url = opt_str("database-url"),
        .publication = opt_str("shape-publication"),
        .slot = opt_str("shape-slot"),
        .long_poll_ms = limits.long_poll_timeout_ms,
        .sse_max_ms = limits.sse_max_duration_ms,
        .read_chunk = limits.read_chunk,
    };
    if (!(rt.shapes = shapes_open(st, &shcfg, err, sizeof err))) {
        fprintf(stderr, "weft: shapes: %s\n", err);
        sessions_close(rt.ss);
        subs_close(rt.subs);
        streams_close(st);
        return 1;
    }
    if (open_auth(&rt.auth) != 0) {
        shapes_close(rt.shapes);
        sessions_close(rt.ss);
        subs_close(rt.subs);
        streams_close(st);
        return 2;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)opt_num("threads");
    if (threads <= 0) threads = cores > 0 ? (int)cores : 1;
    http_server_config cfg = {
        .host = opt_str("host"),
        .port = (int)opt_num("port"),
        .threads = threads,
        .max_head_bytes = opt_num("max-header-bytes"),
        .max_target_len = opt_num("max-url-bytes"),
        .max_body = opt_num("max-body"),
        .request_timeout_ms = (unsigned)opt_num("request-timeout"),
        .idle_timeout_ms = (unsigned)opt_num("idle-timeout"),
        .write_timeout_ms = (unsigned)opt_num("write-timeout"),
        .max_conns = (unsigned)opt_num("max-connections"),
        .io_uring = io_uring,
        .handler = router_handle,
        .handler_ctx = &rt,
    };
    http_server *srv = http_server_start(&cfg, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "weft: %s\n", err);
        shapes_close(rt.shapes);
        sessions_close(rt.ss);
        subs_close(rt.subs);
        streams_close(st);
        auth_close(rt.auth);
        return 1;
    }
    fprintf(stderr, "weft %s listening on http://%s:%d (streams /v1/stream/, sessions /v1/session/; data: %s, durability: %s, %d threads)\n",
            WEFT_VERSION, cfg.host, cfg.port, dir, dur, threads);

    int sig = 0;
    sigwait(&set, &sig);
    log_write(LOG_INFO, "signal %d: shutting down", sig);
    http_server_stop_accepting(srv);
    for (int i = 0; i < 1000 && http_server_busy(srv) > 0 && !streams_waiting_for_space(st); i++)
        usleep(10000);
    streams_detach(st);
    shapes_detach(rt.shapes);
    http_server_free(srv);
    shapes_close(rt.shapes);
    sessions_close(rt.ss);
    subs_close(rt.subs);
    streams_close(st);
    auth_close(rt.auth);
    log_write(LOG_INFO, "shutdown complete");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("weft %s\n", WEFT_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "token")) return cmd_token(argc - 2, argv + 2);
    if (strcmp(argv[1], "serve") != 0) {
        fprintf(stderr, "weft: unknown command '%s' (see weft --help)\n", argv[1]);
        return 2;
    }
    if (parse_args(argc - 2, argv + 2) != 0) return 2;
    return serve();
}
