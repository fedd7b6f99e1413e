/* loadgen.c — load generator for benchmarking Durable Streams servers.
 *
 *   loadgen WORKLOAD --url http://127.0.0.1:PORT [options]
 *
 * Workloads (see usage() for their options):
 *   append    closed-loop POSTs over many keep-alive connections
 *   sse       one stream, N SSE subscribers, a writer at a fixed rate
 *   longpoll  N long-poll readers over S streams, a writer per stream
 *   catchup   N clients read whole pre-filled JSON streams, one pass
 *   tokens    LLM-token style sessions: producer + K SSE readers each
 *   idle      N SSE subscribers holding connections; server RSS per conn
 *   collab    sessions (/v1/session/): an agent streaming a run's chunks,
 *             participants each on one SSE connection making object ops and
 *             presence updates; delivery latency, CPU per event, RSS per
 *             session and idle participant, attach time of a long history
 *
 * T threads each run an epoll loop (http_client.c) over their share of the
 * connections. Latencies go into per-thread log-linear histograms merged at
 * the end. Measurements only count inside the window that starts after
 * --warmup and lasts --duration; for delivery workloads the window applies
 * to the send timestamp carried in each message, so every message sent in
 * the window is either delivered (in a short grace period after it) or
 * counted missing. Server CPU and RSS come from /proc/PID of --server-pid.
 * One summary line goes to stdout, one JSON object per run to --json.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "http_client.h"

#define MS 1000000LL
#define SEC 1000000000LL
#define MAX_SERVER_PIDS 32
#define OPENING_PER_THREAD 256
#define ERRORS_SHOWN 5
#define BATCH_MESSAGES 100

/* ---- growable string ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_reserve(sbuf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        perror("loadgen: realloc");
        exit(2);
    }
    b->p = p;
    b->cap = cap;
}

static void sb_add(sbuf *b, const void *p, size_t n) {
    sb_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_fill(sbuf *b, char ch, size_t n) {
    sb_reserve(b, n);
    memset(b->p + b->len, ch, n);
    b->len += n;
    b->p[b->len] = 0;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Drops the first n bytes. */
static void sb_consume(sbuf *b, size_t n) {
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static void sb_free(sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void json_str(sbuf *b, const char *s) {
    sb_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            sb_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            sb_printf(b, "\\u%04x", ch);
        else
            sb_add(b, s, 1);
    }
    sb_add(b, "\"", 1);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        perror("loadgen: calloc");
        exit(2);
    }
    return p;
}

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---- options ---- */

static struct {
    const char *workload, *url, *label, *json_path;
    char prefix[128], host[80];
    struct sockaddr_in addr;
    double duration, warmup, timeout;
    long threads, connections, streams, size, subscribers, rate, readers, clients, messages, sessions;
    long participants, chunk_batch, history, attaches; /* collab */
    double op_every, presence_every, grace;           /* collab */
    bool producer, no_create, plain_io;
    pid_t server_pids[MAX_SERVER_PIDS];
    int nserver_pids;
} opt;

static void usage(FILE *f) {
    fputs("Usage: loadgen WORKLOAD --url http://127.0.0.1:PORT [options]\n"
          "\n"
          "Common options:\n"
          "  --duration S       measurement window in seconds (default 10)\n"
          "  --warmup S         seconds before the window (default 1)\n"
          "  --threads T        event-loop threads (default 1)\n"
          "  --timeout S        bound on setup, connecting and catchup (default 300)\n"
          "  --server-pid P[,P] sample CPU and RSS of these processes from /proc\n"
          "  --label NAME       label for the report\n"
          "  --json FILE        append one JSON object per run to FILE\n"
          "  --prefix STR       stream path prefix (default bench-<pid>)\n"
          "  --plain-io         one recv(2) or send(2) per socket instead of one io_uring\n"
          "                     submission per poll for all reads, and one for all writes\n"
          "\n"
          "Workloads:\n"
          "  append   --connections 64 --streams 100 --size 256 [--producer] [--no-create]\n"
          "  sse      --subscribers 100 --rate 50 --size 256\n"
          "  longpoll --readers 100 --streams 10 --rate 50 --size 256\n"
          "  catchup  --clients 1000 --messages 2000 --size 1024   (one pass; no --duration)\n"
          "  tokens   --sessions 100 --rate 30 --size 20 --readers 2\n"
          "  idle     --subscribers 1000 [--streams N/100]\n"
          "  collab   --sessions 100 --participants 3 --rate 30 --size 20 --chunk-batch 1\n"
          "           --op-every 1 --presence-every 5 --history 100000 --attaches 200 --grace 2\n"
          "           (--chunk-batch K: K deltas per chunk POST, --rate/K POSTs per second;\n"
          "           --history N: then one session with N chunks in ended runs, and --attaches\n"
          "           sequential attaches of it and as many of an empty session; 0 skips)\n",
          f);
}

static long parse_long(const char *name, const char *v, long min) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v || n < min) die("%s: expected an integer >= %ld, got \"%s\"", name, min, v);
    return n;
}

static double parse_seconds(const char *name, const char *v) {
    char *end;
    double d = strtod(v, &end);
    if (*end || end == v || d < 0 || d > 86400) die("%s: expected seconds, got \"%s\"", name, v);
    return d;
}

static void parse_pids(const char *v) {
    for (const char *p = v; *p;) {
        if (opt.nserver_pids == MAX_SERVER_PIDS) die("--server-pid: at most %d pids", MAX_SERVER_PIDS);
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p || pid <= 0 || (*end && *end != ',')) die("--server-pid: bad pid list \"%s\"", v);
        opt.server_pids[opt.nserver_pids++] = (pid_t)pid;
        p = *end ? end + 1 : end;
    }
}

/* Only loopback targets: this tool can open tens of thousands of connections. */
static void parse_url(const char *url) {
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) die("--url must start with http://");
    p += 7;
    const char *colon = strchr(p, ':');
    if (!colon) die("--url needs a port: http://127.0.0.1:PORT");
    char host[64];
    size_t hlen = (size_t)(colon - p);
    if (hlen == 0 || hlen >= sizeof host) die("--url: bad host");
    memcpy(host, p, hlen);
    host[hlen] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (port <= 0 || port > 65535 || (*end && strcmp(end, "/") != 0)) die("--url: bad port or a path after it");
    memset(&opt.addr, 0, sizeof opt.addr);
    opt.addr.sin_family = AF_INET;
    opt.addr.sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &opt.addr.sin_addr) != 1 || (ntohl(opt.addr.sin_addr.s_addr) >> 24) != 127)
        die("--url: only loopback targets (127.0.0.0/8, localhost) are allowed");
    snprintf(opt.host, sizeof opt.host, "%s:%ld", host, port);
}

static void parse_args(int argc, char **argv) {
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        exit(0);
    }
    if (argc < 2 || argv[1][0] == '-') {
        usage(stderr);
        exit(1);
    }
    opt.workload = argv[1];
    opt.duration = 10;
    opt.warmup = 1;
    opt.timeout = 300;
    opt.threads = 1;
    opt.connections = opt.streams = opt.size = opt.subscribers = opt.rate = opt.readers = -1;
    opt.clients = opt.messages = opt.sessions = -1;
    opt.participants = 3;
    opt.chunk_batch = 1;
    opt.history = 100000;
    opt.attaches = 200;
    opt.op_every = 1;
    opt.presence_every = 5;
    opt.grace = 2;
    snprintf(opt.prefix, sizeof opt.prefix, "bench-%ld", (long)getpid());
    static const struct {
        const char *name;
        long *dst;
        long min;
    } longs[] = {
        {"--threads", &opt.threads, 1},         {"--connections", &opt.connections, 1},
        {"--streams", &opt.streams, 1},         {"--size", &opt.size, 1},
        {"--subscribers", &opt.subscribers, 1}, {"--rate", &opt.rate, 1},
        {"--readers", &opt.readers, 1},         {"--clients", &opt.clients, 1},
        {"--messages", &opt.messages, 1},       {"--sessions", &opt.sessions, 1},
        {"--participants", &opt.participants, 1}, {"--chunk-batch", &opt.chunk_batch, 1},
        {"--history", &opt.history, 0},         {"--attaches", &opt.attaches, 0},
    };
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--producer") == 0) {
            opt.producer = true;
            continue;
        }
        if (strcmp(a, "--no-create") == 0) {
            opt.no_create = true;
            continue;
        }
        if (strcmp(a, "--plain-io") == 0) {
            opt.plain_io = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) die("%s: missing value (see loadgen --help)", a);
        const char *v = argv[++i];
        bool known = true;
        if (strcmp(a, "--url") == 0)
            opt.url = v;
        else if (strcmp(a, "--duration") == 0)
            opt.duration = parse_seconds(a, v);
        else if (strcmp(a, "--warmup") == 0)
            opt.warmup = parse_seconds(a, v);
        else if (strcmp(a, "--timeout") == 0)
            opt.timeout = parse_seconds(a, v);
        else if (strcmp(a, "--op-every") == 0)
            opt.op_every = parse_seconds(a, v);
        else if (strcmp(a, "--presence-every") == 0)
            opt.presence_every = parse_seconds(a, v);
        else if (strcmp(a, "--grace") == 0)
            opt.grace = parse_seconds(a, v);
        else if (strcmp(a, "--label") == 0)
            opt.label = v;
        else if (strcmp(a, "--json") == 0)
            opt.json_path = v;
        else if (strcmp(a, "--server-pid") == 0)
            parse_pids(v);
        else if (strcmp(a, "--prefix") == 0) {
            if (!*v || strlen(v) >= sizeof opt.prefix || strspn(v, "abcdefghijklmnopqrstuvwxyz"
                                                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") != strlen(v))
                die("--prefix: use letters, digits and -_./ (at most %zu)", sizeof opt.prefix - 1);
            strcpy(opt.prefix, v);
        } else {
            known = false;
            for (size_t k = 0; k < sizeof longs / sizeof longs[0]; k++)
                if (strcmp(a, longs[k].name) == 0) {
                    *longs[k].dst = parse_long(a, v, longs[k].min);
                    known = true;
                }
        }
        if (!known) die("unknown option %s (see loadgen --help)", a);
    }
    if (!opt.url) die("--url is required");
    if (opt.duration <= 0) die("--duration must be positive");
    if (opt.op_every < 0.001 || opt.presence_every < 0.001) die("--op-every and --presence-every: at least 0.001 s");
    parse_url(opt.url);
    if (!opt.label) opt.label = opt.workload;
    if (opt.no_create && strcmp(opt.workload, "append") != 0) die("--no-create only applies to append");
}

static long or_default(long v, long def) { return v < 0 ? def : v; }

static long lmax(long a, long b) { return a > b ? a : b; }

/* ---- run timing shared by all threads ---- */

/* run_start: writers begin; the window is [window_start, window_end); threads
 * leave their loops at stop_at or when `stopping` is set. */
static _Atomic int64_t run_start = INT64_MAX, window_start = INT64_MAX, window_end = INT64_MAX,
                       stop_at = INT64_MAX;
static atomic_bool stopping;
static atomic_int errors_shown;

static bool in_window(int64_t t) { return t >= atomic_load(&window_start) && t < atomic_load(&window_end); }
static bool producing(int64_t now) { return now < atomic_load(&window_end); }

static void sleep_until(int64_t t) {
    for (int64_t now = now_ns(); now < t; now = now_ns()) {
        int64_t d = t - now;
        struct timespec ts = {.tv_sec = d / SEC, .tv_nsec = d % SEC};
        nanosleep(&ts, NULL);
    }
}

static void sleep_ms(int ms) { sleep_until(now_ns() + ms * MS); }

/* ---- threads ---- */

typedef struct worker worker;
typedef struct role role;

/* Something that lives on one thread and drives one or more connections. */
struct role {
    void (*start)(role *r);
    void (*destroy)(role *r);
    role *next;
    worker *w;
};

struct worker {
    pthread_t thread;
    loop *loop;
    role *roles;
    hist *lat;        /* request or delivery latency, us */
    hist *completion; /* catchup: per-client completion time, us */
    hist *op_lat, *pres_lat; /* collab: object op and presence delivery latency, us */
    uint64_t ops, errors, bytes;
    uint64_t events, op_deliv, pres_deliv, seq_gaps, seq_dups; /* collab */
    int active; /* roles with work left, for phases that end by themselves */
    bool finite;
};

static worker *workers;
static int nworkers;
static atomic_int workers_exited;
/* Per-thread buffers: the request being built, and its body. */
static _Thread_local sbuf scratch, body_scratch;

typedef struct totals {
    hist *lat, *completion, *op_lat, *pres_lat;
    uint64_t ops, errors, bytes;
    uint64_t events, op_deliv, pres_deliv, seq_gaps, seq_dups;
} totals;

__attribute__((format(printf, 2, 3))) static void count_error(worker *w, const char *fmt, ...) {
    w->errors++;
    if (atomic_fetch_add(&errors_shown, 1) >= ERRORS_SHOWN) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void phase_new(size_t recv_size, bool finite) {
    nworkers = (int)opt.threads;
    workers = xcalloc((size_t)nworkers, sizeof *workers);
    for (int i = 0; i < nworkers; i++) {
        workers[i].loop = loop_new(&opt.addr, recv_size, OPENING_PER_THREAD, !opt.plain_io);
        workers[i].lat = hist_new();
        workers[i].completion = hist_new();
        workers[i].op_lat = hist_new();
        workers[i].pres_lat = hist_new();
        workers[i].finite = finite;
    }
    atomic_store(&workers_exited, 0);
    atomic_store(&stopping, false);
}

static void add_role(role *r, int thread, void (*start)(role *), void (*destroy)(role *)) {
    worker *w = &workers[thread % nworkers];
    r->w = w;
    r->start = start;
    r->destroy = destroy;
    r->next = w->roles;
    w->roles = r;
    w->active++;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    for (role *r = w->roles; r; r = r->next) r->start(r);
    while (!atomic_load(&stopping) && now_ns() < atomic_load(&stop_at) && !(w->finite && w->active <= 0))
        loop_poll(w->loop, 20);
    sb_free(&scratch);
    sb_free(&body_scratch);
    atomic_fetch_add(&workers_exited, 1);
    return NULL;
}

static void phase_start(void) {
    for (int i = 0; i < nworkers; i++)
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) die("pthread_create failed");
}

/* Joins the threads, adds their counts to t (if given) and frees everything. */
static void phase_end(totals *t) {
    atomic_store(&stopping, true);
    for (int i = 0; i < nworkers; i++) pthread_join(workers[i].thread, NULL);
    for (int i = 0; i < nworkers; i++) {
        worker *w = &workers[i];
        if (t) {
            hist_merge(t->lat, w->lat);
            hist_merge(t->completion, w->completion);
            hist_merge(t->op_lat, w->op_lat);
            hist_merge(t->pres_lat, w->pres_lat);
            t->ops += w->ops;
            t->errors += w->errors;
            t->bytes += w->bytes;
            t->events += w->events;
            t->op_deliv += w->op_deliv;
            t->pres_deliv += w->pres_deliv;
            t->seq_gaps += w->seq_gaps;
            t->seq_dups += w->seq_dups;
        }
        while (w->roles) {
            role *r = w->roles;
            w->roles = r->next;
            r->destroy(r);
        }
        loop_free(w->loop);
        hist_free(w->lat);
        hist_free(w->completion);
        hist_free(w->op_lat);
        hist_free(w->pres_lat);
    }
    free(workers);
    workers = NULL;
    atomic_store(&stop_at, INT64_MAX);
}

/* ---- requests ---- */

static void stream_path(char *dst, size_t size, const char *kind, long i) {
    snprintf(dst, size, "/v1/stream/%s/%s-%ld", opt.prefix, kind, i);
}

/* Builds a whole request in the thread's scratch buffer; `extra` is further
 * header lines, each ending in CRLF. */
static sbuf *request(const char *method, const char *target, const char *ctype, const char *extra,
                     const char *body, size_t len) {
    sbuf *b = &scratch;
    b->len = 0;
    sb_printf(b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, opt.host);
    if (ctype) sb_printf(b, "Content-Type: %s\r\n", ctype);
    if (extra) sb_add(b, extra, strlen(extra));
    if (strcmp(method, "GET") != 0) sb_printf(b, "Content-Length: %zu\r\n", len);
    sb_add(b, "\r\n", 2);
    if (len) sb_add(b, body, len);
    return b;
}

static void send_request(hc_conn *c, sbuf *b) { hc_request(c, b->p, b->len); }

static bool ok_status(int status) { return status >= 200 && status < 300; }

/* One stream and the clients on it. `connected` counts readers that are in
 * place (first SSE control event, or first long-poll written); `sent` counts
 * acknowledged appends whose timestamp lies in the window. */
typedef struct group {
    char path[192];
    atomic_long connected;
    atomic_ulong sent;
    atomic_ulong sent_ops, sent_pres; /* collab: object batches and presence updates */
} group;

static group *groups;
static long ngroups;

static void groups_new(long n, const char *kind) {
    ngroups = n;
    groups = xcalloc((size_t)n, sizeof *groups);
    for (long i = 0; i < n; i++) stream_path(groups[i].path, sizeof groups[i].path, kind, i);
}

static long groups_connected(void) {
    long n = 0;
    for (long i = 0; i < ngroups; i++) n += atomic_load(&groups[i].connected);
    return n;
}

/* Sum over streams of acknowledged appends times readers in place. */
static uint64_t groups_expected(void) {
    uint64_t n = 0;
    for (long i = 0; i < ngroups; i++)
        n += (uint64_t)atomic_load(&groups[i].sent) * (uint64_t)atomic_load(&groups[i].connected);
    return n;
}

/* Appends the writers would have made in the window had the server kept up. */
static uint64_t sends_scheduled(void) { return (uint64_t)((double)opt.rate * opt.duration * (double)ngroups); }

static uint64_t groups_sent(void) {
    uint64_t n = 0;
    for (long i = 0; i < ngroups; i++) n += atomic_load(&groups[i].sent);
    return n;
}

/* Records one delivered message stamped ts (CLOCK_MONOTONIC ns). */
static void delivered(worker *w, int64_t ts, size_t bytes) {
    if (!in_window(ts)) return;
    int64_t lat = now_ns() - ts;
    w->ops++;
    w->bytes += bytes;
    hist_record(w->lat, lat > 0 ? (uint64_t)lat / 1000 : 0);
}

/* Timestamps at the start of every line of text ("<ts>|padding"). */
static void deliver_lines(worker *w, const char *p, size_t n) {
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        int64_t ts = 0;
        const char *q = p;
        while (q < le && *q >= '0' && *q <= '9') ts = ts * 10 + (*q++ - '0');
        if (q > p) delivered(w, ts, (size_t)opt.size);
        p = nl ? nl + 1 : end;
    }
}

/* Timestamps of JSON token messages {"t":<ts>,...}, however batched. */
static void deliver_tokens(worker *w, const char *p, size_t n) {
    const char *end = p + n;
    while (p < end) {
        const char *k = memmem(p, (size_t)(end - p), "\"t\":", 4);
        if (!k) return;
        p = k + 4;
        int64_t ts = 0;
        const char *q = p;
        while (q < end && *q >= '0' && *q <= '9') ts = ts * 10 + (*q++ - '0');
        if (q > p) delivered(w, ts, (size_t)opt.size);
        p = q;
    }
}

/* ---- setup: a fixed list of requests run over parallel connections ---- */

static struct {
    const char *what;
    size_t njobs;
    atomic_size_t next, finished;
    void (*build)(size_t job);
    atomic_bool failed;
} jobs;

typedef struct jobber {
    role r;
    hc_conn *c;
    size_t job;
} jobber;

static void jobber_next(jobber *j) {
    size_t k = atomic_fetch_add(&jobs.next, 1);
    if (k >= jobs.njobs || atomic_load(&jobs.failed)) {
        j->r.w->active--;
        return;
    }
    j->job = k;
    jobs.build(k);
    send_request(j->c, &scratch);
}

static void jobber_done(hc_conn *c) {
    jobber *j = c->user;
    if (!ok_status(c->status)) {
        atomic_store(&jobs.failed, true);
        count_error(j->r.w, "%s (request %zu): HTTP %d %s", jobs.what, j->job, c->status, c->error_body);
        j->r.w->active--;
        return;
    }
    atomic_fetch_add(&jobs.finished, 1);
    jobber_next(j);
}

static void jobber_fail(hc_conn *c, const char *why) {
    jobber *j = c->user;
    atomic_store(&jobs.failed, true);
    count_error(j->r.w, "%s (request %zu): %s", jobs.what, j->job, why);
    j->r.w->active--;
}

static const hc_ops jobber_ops = {.done = jobber_done, .fail = jobber_fail};

static void jobber_start(role *r) { jobber_next((jobber *)r); }

static void jobber_destroy(role *r) {
    hc_free(((jobber *)r)->c);
    free(r);
}

/* Runs njobs requests made by build() over `conns` connections; exits on any
 * failure or when --timeout passes. */
static void run_jobs(const char *what, size_t njobs, long conns, void (*build)(size_t)) {
    if (njobs == 0) return;
    int64_t t0 = now_ns();
    jobs.what = what;
    jobs.njobs = njobs;
    jobs.build = build;
    atomic_store(&jobs.next, 0);
    atomic_store(&jobs.finished, 0);
    atomic_store(&jobs.failed, false);
    phase_new(16 * 1024, true);
    if ((size_t)conns > njobs) conns = (long)njobs;
    for (long i = 0; i < conns; i++) {
        jobber *j = xcalloc(1, sizeof *j);
        add_role(&j->r, (int)i, jobber_start, jobber_destroy);
        j->c = hc_new(j->r.w->loop, &jobber_ops, j);
    }
    phase_start();
    int64_t deadline = t0 + (int64_t)(opt.timeout * SEC);
    while (atomic_load(&workers_exited) < nworkers && now_ns() < deadline) sleep_ms(5);
    phase_end(NULL);
    size_t finished = atomic_load(&jobs.finished);
    if (atomic_load(&jobs.failed)) die("setup failed: %s", what);
    if (finished < njobs) die("setup timed out: %s (%zu of %zu done in %.0f s)", what, finished, njobs, opt.timeout);
    fprintf(stderr, "loadgen: setup: %s: %zu requests in %.2f s\n", what, njobs, (double)(now_ns() - t0) / SEC);
}

static const char *create_type;
static const char *create_kind;

static void build_create(size_t i) {
    char path[192];
    stream_path(path, sizeof path, create_kind, (long)i);
    request("PUT", path, create_type, NULL, NULL, 0);
}

static void create_streams(const char *kind, long n, const char *ctype) {
    create_kind = kind;
    create_type = ctype;
    char what[96];
    snprintf(what, sizeof what, "create %ld %s stream%s", n, ctype, n == 1 ? "" : "s");
    run_jobs(what, (size_t)n, 64, build_create);
}

/* ---- SSE subscribers (sse, tokens, idle) ---- */

typedef enum sub_mode { SUB_LINES, SUB_TOKENS, SUB_IGNORE } sub_mode;

static atomic_long subs_live;       /* subscribers with an open SSE response that has sent a control event */
static atomic_ulong sse_reconnects; /* SSE responses the server ended (weft does after --sse-max-duration) */

/* An SSE response split into events: fn gets each event's type (0 none,
 * 'c' control, 'd' data, '?' other) and its data lines joined with \n (NULL
 * if it had none). */
typedef struct sse_in {
    sbuf in;   /* input not yet split into lines */
    sbuf data; /* data lines of the current event, joined with \n */
    int event;
    bool has_data;
} sse_in;

typedef void (*sse_fn)(void *ctx, int event, const char *data, size_t len);

static void sse_reset(sse_in *e) {
    e->in.len = e->data.len = 0;
    e->event = 0;
    e->has_data = false;
}

static void sse_free(sse_in *e) {
    sb_free(&e->in);
    sb_free(&e->data);
}

static void sse_line(sse_in *e, const char *p, size_t n, sse_fn fn, void *ctx) {
    if (n == 0) {
        fn(ctx, e->event, e->has_data ? e->data.p : NULL, e->has_data ? e->data.len : 0);
        e->event = 0;
        e->has_data = false;
        e->data.len = 0;
    } else if (n >= 6 && memcmp(p, "event:", 6) == 0) {
        p += 6;
        n -= 6;
        while (n && *p == ' ') p++, n--;
        e->event = n == 7 && memcmp(p, "control", 7) == 0 ? 'c' : n == 4 && memcmp(p, "data", 4) == 0 ? 'd' : '?';
    } else if (n >= 5 && memcmp(p, "data:", 5) == 0) {
        p += 5;
        n -= 5;
        if (n && *p == ' ') p++, n--; /* SSE strips exactly one space */
        if (e->has_data) sb_add(&e->data, "\n", 1);
        sb_add(&e->data, p, n);
        e->has_data = true;
    }
}

static void sse_feed(sse_in *e, const char *p, size_t n, sse_fn fn, void *ctx) {
    sb_add(&e->in, p, n);
    size_t pos = 0;
    for (;;) {
        char *nl = memchr(e->in.p + pos, '\n', e->in.len - pos);
        if (!nl) break;
        size_t end = (size_t)(nl - e->in.p), len = end - pos;
        if (len && e->in.p[end - 1] == '\r') len--;
        sse_line(e, e->in.p + pos, len, fn, ctx);
        pos = end + 1;
    }
    sb_consume(&e->in, pos);
}

/* Copies a control event's streamNextOffset into dst (unchanged if none). */
static void control_offset(const char *data, char *dst, size_t size) {
    const char *k = data ? strstr(data, "\"streamNextOffset\"") : NULL;
    if (!k) return;
    k = strchr(k + 18, '"');
    const char *e = k ? strchr(k + 1, '"') : NULL;
    if (e && (size_t)(e - k - 1) < size) {
        memcpy(dst, k + 1, (size_t)(e - k - 1));
        dst[e - k - 1] = 0;
    }
}

typedef struct sub {
    role r;
    hc_conn *c;
    group *g;
    sub_mode mode;
    timer retry;
    char offset[96];
    bool ever, live;
    sse_in sse;
} sub;

static void sub_connect(sub *s) {
    char target[320];
    snprintf(target, sizeof target, "%s?offset=%s&live=sse", s->g->path, s->offset);
    sse_reset(&s->sse);
    send_request(s->c, request("GET", target, NULL, NULL, NULL, 0));
}

static void sub_retry(void *arg) { sub_connect(arg); }

static void sub_gone(sub *s) {
    if (!s->live) return;
    s->live = false;
    atomic_fetch_sub(&subs_live, 1);
}

static void sub_control(sub *s, const char *data) {
    control_offset(data, s->offset, sizeof s->offset);
    if (!s->live) {
        s->live = true;
        atomic_fetch_add(&subs_live, 1);
    }
    if (!s->ever) {
        s->ever = true;
        atomic_fetch_add(&s->g->connected, 1);
    }
}

static void sub_event(void *ctx, int event, const char *data, size_t len) {
    sub *s = ctx;
    if (event == 'c') {
        sub_control(s, data);
    } else if (event == 'd' && data) {
        if (s->mode == SUB_LINES)
            deliver_lines(s->r.w, data, len);
        else if (s->mode == SUB_TOKENS)
            deliver_tokens(s->r.w, data, len);
    }
}

static void sub_body(hc_conn *c, const char *p, size_t n) {
    sub *s = c->user;
    if (c->status == 200) sse_feed(&s->sse, p, n, sub_event, s);
}

/* The server ended the SSE response (weft does after --sse-max-duration):
 * continue from the last offset it reported. */
static void sub_done(hc_conn *c) {
    sub *s = c->user;
    sub_gone(s);
    if (c->status != 200) {
        count_error(s->r.w, "GET %s (SSE): HTTP %d %s", s->g->path, c->status, c->error_body);
        timer_set(s->r.w->loop, &s->retry, now_ns() + 500 * MS);
        return;
    }
    atomic_fetch_add(&sse_reconnects, 1);
    sub_connect(s);
}

static void sub_fail(hc_conn *c, const char *why) {
    sub *s = c->user;
    sub_gone(s);
    if (producing(now_ns())) count_error(s->r.w, "GET %s (SSE): %s", s->g->path, why);
    timer_set(s->r.w->loop, &s->retry, now_ns() + 100 * MS);
}

static const hc_ops sub_ops = {.body = sub_body, .done = sub_done, .fail = sub_fail};

static void sub_start(role *r) { sub_connect((sub *)r); }

static void sub_destroy(role *r) {
    sub *s = (sub *)r;
    hc_free(s->c);
    sse_free(&s->sse);
    free(s);
}

static void add_sub(int thread, group *g, sub_mode mode) {
    sub *s = xcalloc(1, sizeof *s);
    add_role(&s->r, thread, sub_start, sub_destroy);
    s->c = hc_new(s->r.w->loop, &sub_ops, s);
    s->g = g;
    s->mode = mode;
    strcpy(s->offset, "now");
    timer_init(&s->retry, sub_retry, s);
}

/* ---- rate-driven writers (sse, longpoll, tokens) ---- */

typedef struct writer {
    role r;
    hc_conn *c;
    group *g;
    timer tick;
    int64_t period, offset_in_period, next_due, ts;
    bool busy, late, tokens;
    uint64_t seq;
    char producer_id[48];
} writer;

static void writer_tick(void *arg);

static void writer_send(writer *wr, int64_t now) {
    sbuf *body = &body_scratch;
    body->len = 0;
    wr->ts = now;
    if (wr->tokens) {
        sb_printf(body, "{\"t\":%" PRId64 ",\"x\":\"", now);
        if ((size_t)opt.size > body->len + 2) sb_fill(body, 'x', (size_t)opt.size - body->len - 2);
        sb_add(body, "\"}", 2);
    } else {
        sb_printf(body, "%" PRId64 "|", now);
        if ((size_t)opt.size > body->len + 1) sb_fill(body, 'x', (size_t)opt.size - body->len - 1);
        sb_add(body, "\n", 1);
    }
    char extra[160] = "";
    if (wr->tokens)
        snprintf(extra, sizeof extra, "Producer-Id: %s\r\nProducer-Epoch: 0\r\nProducer-Seq: %" PRIu64 "\r\n",
                 wr->producer_id, wr->seq);
    wr->busy = true;
    send_request(wr->c, request("POST", wr->g->path, wr->tokens ? "application/json" : "text/plain", extra,
                                body->p, body->len));
}

/* Sends on schedule. A writer whose previous append is still in flight is
 * late and sends when it completes; one far behind skips ahead rather than
 * bursting to catch up. */
static void writer_tick(void *arg) {
    writer *wr = arg;
    int64_t now = now_ns();
    if (!producing(now)) return;
    if (wr->busy) {
        wr->late = true;
        return;
    }
    writer_send(wr, now);
    wr->next_due += wr->period;
    if (wr->next_due < now - 100 * MS) wr->next_due = now + wr->period;
    timer_set(wr->r.w->loop, &wr->tick, wr->next_due);
}

/* Waits for the main thread to start the run. */
static void writer_wait(void *arg) {
    writer *wr = arg;
    int64_t start = atomic_load(&run_start);
    if (start == INT64_MAX) {
        timer_set(wr->r.w->loop, &wr->tick, now_ns() + 10 * MS);
        return;
    }
    wr->next_due = start + wr->offset_in_period;
    timer_init(&wr->tick, writer_tick, wr);
    timer_set(wr->r.w->loop, &wr->tick, wr->next_due);
}

static void writer_done(hc_conn *c) {
    writer *wr = c->user;
    wr->busy = false;
    wr->seq++;
    if (ok_status(c->status)) {
        if (in_window(wr->ts)) atomic_fetch_add(&wr->g->sent, 1);
    } else {
        count_error(wr->r.w, "POST %s: HTTP %d %s", wr->g->path, c->status, c->error_body);
    }
    if (wr->late) {
        wr->late = false;
        writer_tick(wr);
    }
}

/* The append may or may not have landed; the retry reuses its Producer-Seq,
 * so a producer stream stays in sequence either way. */
static void writer_fail(hc_conn *c, const char *why) {
    writer *wr = c->user;
    wr->busy = false;
    count_error(wr->r.w, "POST %s: %s", wr->g->path, why);
    timer_set(wr->r.w->loop, &wr->tick, now_ns() + 50 * MS);
}

static const hc_ops writer_ops = {.done = writer_done, .fail = writer_fail};

static void writer_start(role *r) {
    writer *wr = (writer *)r;
    timer_set(wr->r.w->loop, &wr->tick, now_ns());
}

static void writer_destroy(role *r) {
    hc_free(((writer *)r)->c);
    free(r);
}

/* index/count spread the writers' send times evenly over one period. */
static void add_writer(int thread, group *g, bool tokens, long index, long count) {
    writer *wr = xcalloc(1, sizeof *wr);
    add_role(&wr->r, thread, writer_start, writer_destroy);
    wr->c = hc_new(wr->r.w->loop, &writer_ops, wr);
    wr->g = g;
    wr->tokens = tokens;
    wr->period = SEC / opt.rate;
    wr->offset_in_period = wr->period * index / (count ? count : 1);
    snprintf(wr->producer_id, sizeof wr->producer_id, "lg-%ld", index);
    timer_init(&wr->tick, writer_wait, wr);
}

/* ---- server sampling ---- */

typedef struct sample {
    bool ok;
    double cpu_ms;
    long rss_kb, hwm_kb;
} sample;

static sample sample_server(void) {
    sample s = {.ok = opt.nserver_pids > 0};
    long tick = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < opt.nserver_pids; i++) {
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)opt.server_pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) {
            s.ok = false;
            continue;
        }
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        /* The command name may contain spaces; fields resume after its ')'. */
        char *p = strrchr(buf, ')');
        unsigned long long utime = 0, stime = 0;
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
            s.ok = false;
        s.cpu_ms += (double)(utime + stime) * 1000.0 / (double)tick;
        snprintf(path, sizeof path, "/proc/%d/status", (int)opt.server_pids[i]);
        f = fopen(path, "r");
        if (!f) continue;
        char line[256];
        while (fgets(line, sizeof line, f)) {
            long kb;
            if (sscanf(line, "VmRSS: %ld", &kb) == 1) s.rss_kb += kb;
            if (sscanf(line, "VmHWM: %ld", &kb) == 1) s.hwm_kb += kb;
        }
        fclose(f);
    }
    return s;
}

/* ---- results ---- */

typedef struct result {
    totals t;
    double duration_s;
    uint64_t ops, bytes; /* what ops_per_sec and mb_per_sec are made of */
    sample s0, s1;
    sbuf params; /* JSON members, each preceded by a comma */
    sbuf extra;  /* workload-specific JSON members, each preceded by a comma */
    sbuf summary; /* workload-specific part of the summary line */
} result;

static result res;

static void param_long(const char *name, long v) { sb_printf(&res.params, ",\"%s\":%ld", name, v); }

static void common_params(void) {
    sb_printf(&res.params, ",\"duration\":%g,\"warmup\":%g", opt.duration, opt.warmup);
    param_long("threads", opt.threads);
}

/* The window opens after the warm-up and closes --duration later; the main
 * thread samples the server at both ends. grace: how long the threads keep
 * running after it (deliveries of messages sent near its end). */
static void run_window(double grace_s) {
    int64_t now = now_ns();
    int64_t ws = now + (int64_t)(opt.warmup * SEC), we = ws + (int64_t)(opt.duration * SEC);
    atomic_store(&window_start, ws);
    atomic_store(&window_end, we);
    atomic_store(&stop_at, we + (int64_t)(grace_s * SEC));
    atomic_store(&run_start, now);
    sleep_until(ws);
    res.s0 = sample_server();
    sleep_until(we);
    res.s1 = sample_server();
    res.duration_s = opt.duration;
    sleep_until(atomic_load(&stop_at));
}

/* Waits until `want` readers are in place or --timeout passes. */
static long wait_connected(long want, const char *what) {
    int64_t t0 = now_ns(), deadline = t0 + (int64_t)(opt.timeout * SEC);
    long got = 0;
    while ((got = groups_connected()) < want && now_ns() < deadline) sleep_ms(10);
    if (got == 0) die("no %s connected within %.0f s", what, opt.timeout);
    if (got < want) fprintf(stderr, "loadgen: only %ld of %ld %s connected, measuring those\n", got, want, what);
    fprintf(stderr, "loadgen: %ld %s connected in %.2f s\n", got, what, (double)(now_ns() - t0) / SEC);
    return got;
}

static void report(void) {
    hist *h = res.t.lat;
    double ops_per_sec = res.duration_s > 0 ? (double)res.ops / res.duration_s : 0;
    double mb_per_sec = res.duration_s > 0 ? (double)res.bytes / res.duration_s / 1e6 : 0;
    bool srv = res.s0.ok && res.s1.ok;
    double cpu_ms = srv ? res.s1.cpu_ms - res.s0.cpu_ms : 0;

    sbuf line = {0};
    sb_printf(&line, "%s [%s]: %.0f ops/s, %.2f MB/s", opt.workload, opt.label, ops_per_sec, mb_per_sec);
    if (h->count)
        sb_printf(&line, ", latency us p50 %" PRIu64 " p90 %" PRIu64 " p99 %" PRIu64 " p999 %" PRIu64 " max %" PRIu64,
                  hist_quantile(h, 0.5), hist_quantile(h, 0.9), hist_quantile(h, 0.99), hist_quantile(h, 0.999),
                  h->max);
    sb_printf(&line, ", errors %" PRIu64, res.t.errors);
    if (res.summary.len) sb_printf(&line, ", %s", res.summary.p);
    if (srv)
        sb_printf(&line, ", server cpu %.0f ms (%.1f us/op), rss %.1f -> %.1f MB", cpu_ms,
                  res.ops ? cpu_ms * 1000 / (double)res.ops : 0, res.s0.rss_kb / 1024.0, res.s1.rss_kb / 1024.0);
    printf("%s\n", line.p);
    fflush(stdout);
    sb_free(&line);

    if (!opt.json_path) return;
    sbuf j = {0};
    sb_add(&j, "{\"workload\":", 12);
    json_str(&j, opt.workload);
    sb_add(&j, ",\"label\":", 9);
    json_str(&j, opt.label);
    sb_printf(&j, ",\"params\":{\"url\":");
    json_str(&j, opt.url);
    sb_add(&j, ",\"prefix\":", 10);
    json_str(&j, opt.prefix);
    if (res.params.len) sb_add(&j, res.params.p, res.params.len);
    sb_printf(&j,
              "},\"ops\":%" PRIu64 ",\"duration_s\":%.3f,\"ops_per_sec\":%.1f,\"mb_per_sec\":%.3f,\"errors\":%" PRIu64
              ",\"latency_us\":{\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64
              ",\"max\":%" PRIu64 ",\"count\":%" PRIu64 "}",
              res.ops, res.duration_s, ops_per_sec, mb_per_sec, res.t.errors, hist_quantile(h, 0.5),
              hist_quantile(h, 0.9), hist_quantile(h, 0.99), hist_quantile(h, 0.999), h->max, h->count);
    if (srv)
        sb_printf(&j,
                  ",\"server_cpu_ms\":%.1f,\"server_cpu_us_per_op\":%.3f,\"server_rss_kb_start\":%ld,"
                  "\"server_rss_kb_end\":%ld,\"server_rss_kb_peak\":%ld",
                  cpu_ms, res.ops ? cpu_ms * 1000 / (double)res.ops : 0, res.s0.rss_kb, res.s1.rss_kb, res.s1.hwm_kb);
    else
        sb_printf(&j, ",\"server_cpu_ms\":null,\"server_cpu_us_per_op\":null,\"server_rss_kb_start\":null,"
                      "\"server_rss_kb_end\":null,\"server_rss_kb_peak\":null");
    if (res.extra.len) sb_add(&j, res.extra.p, res.extra.len);
    sb_add(&j, "}\n", 2);
    FILE *f = fopen(opt.json_path, "a");
    if (!f || fwrite(j.p, 1, j.len, f) != j.len || fclose(f) != 0) die("cannot write %s: %s", opt.json_path, strerror(errno));
    sb_free(&j);
}

/* ---- append ---- */

/* Connection k owns streams k, k+C, k+2C, ... (or stream k mod N when there
 * are fewer streams than connections) and cycles over them; with --producer
 * each (connection, stream) pair is its own producer sequence. */
typedef struct appender {
    role r;
    hc_conn *c;
    timer retry;
    long index, first, step, count, pos;
    uint64_t *seq;
    int64_t sent;
} appender;

static char *append_body;

static void appender_send(appender *a) {
    char path[192], extra[160] = "";
    stream_path(path, sizeof path, "append", a->first + a->pos * a->step);
    if (opt.producer)
        snprintf(extra, sizeof extra, "Producer-Id: lg-%ld\r\nProducer-Epoch: 0\r\nProducer-Seq: %" PRIu64 "\r\n",
                 a->index, a->seq[a->pos]);
    a->sent = now_ns();
    send_request(a->c, request("POST", path, "application/octet-stream", extra, append_body, (size_t)opt.size));
}

static void appender_retry(void *arg) { appender_send(arg); }

static void appender_done(hc_conn *c) {
    appender *a = c->user;
    int64_t now = now_ns();
    if (ok_status(c->status)) {
        if (in_window(now)) {
            a->r.w->ops++;
            a->r.w->bytes += (uint64_t)opt.size;
            hist_record(a->r.w->lat, (uint64_t)(now - a->sent) / 1000);
        }
    } else if (producing(now)) {
        char path[192];
        stream_path(path, sizeof path, "append", a->first + a->pos * a->step);
        count_error(a->r.w, "POST %s: HTTP %d %s", path, c->status, c->error_body);
    }
    a->seq[a->pos]++;
    a->pos = (a->pos + 1) % a->count;
    if (producing(now)) appender_send(a);
}

static void appender_fail(hc_conn *c, const char *why) {
    appender *a = c->user;
    if (!producing(now_ns())) return;
    count_error(a->r.w, "POST: %s", why);
    timer_set(a->r.w->loop, &a->retry, now_ns() + 10 * MS);
}

static const hc_ops appender_ops = {.done = appender_done, .fail = appender_fail};

static void appender_start(role *r) { appender_send((appender *)r); }

static void appender_destroy(role *r) {
    appender *a = (appender *)r;
    hc_free(a->c);
    free(a->seq);
    free(a);
}

static void run_append(void) {
    long conns = or_default(opt.connections, 64), streams = or_default(opt.streams, 100);
    opt.size = or_default(opt.size, 256);
    common_params();
    param_long("connections", conns);
    param_long("streams", streams);
    param_long("size", opt.size);
    sb_printf(&res.params, ",\"producer\":%s,\"no_create\":%s", opt.producer ? "true" : "false",
              opt.no_create ? "true" : "false");
    if (!opt.no_create) create_streams("append", streams, "application/octet-stream");
    append_body = malloc((size_t)opt.size);
    if (!append_body) die("out of memory");
    for (long i = 0; i < opt.size; i++) append_body[i] = (char)('a' + i % 26);

    phase_new(4096, false);
    for (long k = 0; k < conns; k++) {
        appender *a = xcalloc(1, sizeof *a);
        add_role(&a->r, (int)k, appender_start, appender_destroy);
        a->c = hc_new(a->r.w->loop, &appender_ops, a);
        a->index = k;
        if (streams >= conns) {
            a->first = k;
            a->step = conns;
            a->count = (streams - k + conns - 1) / conns;
        } else {
            a->first = k % streams;
            a->step = 1;
            a->count = 1;
        }
        a->seq = xcalloc((size_t)a->count, sizeof *a->seq);
        timer_init(&a->retry, appender_retry, a);
    }
    phase_start();
    run_window(0);
    phase_end(&res.t);
    free(append_body);
    res.ops = res.t.ops;
    res.bytes = res.t.bytes;
}

/* ---- sse ---- */

static void run_sse(void) {
    long n = or_default(opt.subscribers, 100);
    opt.rate = or_default(opt.rate, 50);
    opt.size = or_default(opt.size, 256);
    common_params();
    param_long("subscribers", n);
    param_long("rate", opt.rate);
    param_long("size", opt.size);
    groups_new(1, "sse");
    create_streams("sse", 1, "text/plain");
    phase_new(4096, false);
    for (long i = 0; i < n; i++) add_sub((int)i, &groups[0], SUB_LINES);
    add_writer(0, &groups[0], false, 0, 1);
    phase_start();
    long connected = wait_connected(n, "subscribers");
    run_window(2);
    phase_end(&res.t);
    uint64_t expected = groups_expected();
    res.ops = res.t.ops;
    res.bytes = res.t.bytes;
    sb_printf(&res.extra,
              ",\"connected\":%ld,\"sent\":%" PRIu64 ",\"sent_scheduled\":%" PRIu64 ",\"delivered\":%" PRIu64
              ",\"expected\":%" PRIu64,
              connected, groups_sent(), sends_scheduled(), res.t.ops, expected);
    sb_printf(&res.extra, ",\"reconnects\":%lu", atomic_load(&sse_reconnects));
    sb_printf(&res.summary, "delivered %" PRIu64 "/%" PRIu64 " to %ld subscribers (%" PRIu64 " of %" PRIu64 " sent)",
              res.t.ops, expected, connected, groups_sent(), sends_scheduled());
}

/* ---- longpoll ---- */

typedef struct poller {
    role r;
    hc_conn *c;
    group *g;
    timer retry;
    char offset[96], cursor[32];
    bool counted;
    sbuf body;
} poller;

static void poller_poll(poller *p) {
    char target[384];
    int n = snprintf(target, sizeof target, "%s?offset=%s&live=long-poll", p->g->path, p->offset);
    if (p->cursor[0]) snprintf(target + n, sizeof target - (size_t)n, "&cursor=%s", p->cursor);
    p->body.len = 0;
    send_request(p->c, request("GET", target, NULL, NULL, NULL, 0));
}

static void poller_retry(void *arg) { poller_poll(arg); }

static void poller_sent(hc_conn *c) {
    poller *p = c->user;
    if (p->counted) return;
    p->counted = true;
    atomic_fetch_add(&p->g->connected, 1);
}

static void poller_body(hc_conn *c, const char *d, size_t n) {
    poller *p = c->user;
    if (c->status == 200) sb_add(&p->body, d, n);
}

static void poller_done(hc_conn *c) {
    poller *p = c->user;
    if (c->status != 200 && c->status != 204) {
        count_error(p->r.w, "GET %s (long-poll): HTTP %d %s", p->g->path, c->status, c->error_body);
        timer_set(p->r.w->loop, &p->retry, now_ns() + 200 * MS);
        return;
    }
    if (c->status == 200) deliver_lines(p->r.w, p->body.p, p->body.len);
    if (c->next_offset[0]) strcpy(p->offset, c->next_offset);
    if (c->cursor[0]) strcpy(p->cursor, c->cursor);
    poller_poll(p);
}

static void poller_fail(hc_conn *c, const char *why) {
    poller *p = c->user;
    if (producing(now_ns())) count_error(p->r.w, "GET %s (long-poll): %s", p->g->path, why);
    timer_set(p->r.w->loop, &p->retry, now_ns() + 100 * MS);
}

static const hc_ops poller_ops = {.body = poller_body, .done = poller_done, .fail = poller_fail, .sent = poller_sent};

static void poller_start(role *r) { poller_poll((poller *)r); }

static void poller_destroy(role *r) {
    poller *p = (poller *)r;
    hc_free(p->c);
    sb_free(&p->body);
    free(p);
}

static void run_longpoll(void) {
    long n = or_default(opt.readers, 100), s = or_default(opt.streams, 10);
    opt.rate = or_default(opt.rate, 50);
    opt.size = or_default(opt.size, 256);
    common_params();
    param_long("readers", n);
    param_long("streams", s);
    param_long("rate", opt.rate);
    param_long("size", opt.size);
    groups_new(s, "longpoll");
    create_streams("longpoll", s, "text/plain");
    phase_new(4096, false);
    for (long i = 0; i < n; i++) {
        poller *p = xcalloc(1, sizeof *p);
        add_role(&p->r, (int)i, poller_start, poller_destroy);
        p->c = hc_new(p->r.w->loop, &poller_ops, p);
        /* A poll gets its response only when data arrives: free its
         * connect slot as soon as the request is out. */
        p->c->release_on_sent = true;
        p->g = &groups[i % s];
        strcpy(p->offset, "now");
        timer_init(&p->retry, poller_retry, p);
    }
    for (long i = 0; i < s; i++) add_writer((int)i, &groups[i], false, i, s);
    phase_start();
    long connected = wait_connected(n, "long-poll readers");
    run_window(2);
    phase_end(&res.t);
    uint64_t expected = groups_expected();
    res.ops = res.t.ops;
    res.bytes = res.t.bytes;
    sb_printf(&res.extra,
              ",\"connected\":%ld,\"sent\":%" PRIu64 ",\"sent_scheduled\":%" PRIu64 ",\"delivered\":%" PRIu64
              ",\"expected\":%" PRIu64,
              connected, groups_sent(), sends_scheduled(), res.t.ops, expected);
    sb_printf(&res.summary, "delivered %" PRIu64 "/%" PRIu64 " to %ld readers (%" PRIu64 " of %" PRIu64 " sent)",
              res.t.ops, expected, connected, groups_sent(), sends_scheduled());
}

/* ---- catchup ---- */

static long catchup_batches; /* POSTs per stream */

/* One POST of up to BATCH_MESSAGES messages of about --size bytes each, as a
 * JSON array (the server stores each element as a message). */
static void build_fill(size_t job) {
    long stream = (long)job / catchup_batches, batch = (long)job % catchup_batches;
    long first = batch * BATCH_MESSAGES, count = opt.messages - first;
    if (count > BATCH_MESSAGES) count = BATCH_MESSAGES;
    sbuf *body = &body_scratch;
    body->len = 0;
    sb_add(body, "[", 1);
    for (long m = 0; m < count; m++) {
        size_t start = body->len;
        sb_printf(body, "%s{\"n\":%ld,\"p\":\"", m ? "," : "", first + m);
        size_t used = body->len - start + 2;
        if ((size_t)opt.size > used) sb_fill(body, 'x', (size_t)opt.size - used);
        sb_add(body, "\"}", 2);
    }
    sb_add(body, "]", 1);
    char path[192];
    stream_path(path, sizeof path, "catchup", stream);
    request("POST", path, "application/json", NULL, body->p, body->len);
}

typedef struct reader {
    role r;
    hc_conn *c;
    long stream;
    int64_t started, sent;
} reader;

static void reader_get(reader *rd, const char *offset) {
    char path[192], target[320];
    stream_path(path, sizeof path, "catchup", rd->stream);
    snprintf(target, sizeof target, "%s?offset=%s", path, offset);
    rd->sent = now_ns();
    send_request(rd->c, request("GET", target, NULL, NULL, NULL, 0));
}

static void reader_body(hc_conn *c, const char *p, size_t n) {
    (void)p;
    reader *rd = c->user;
    if (c->status == 200) rd->r.w->bytes += n;
}

static void reader_done(hc_conn *c) {
    reader *rd = c->user;
    worker *w = rd->r.w;
    int64_t now = now_ns();
    if (c->status != 200 || !c->next_offset[0]) {
        count_error(w, "GET catchup-%ld: HTTP %d %s", rd->stream, c->status, c->error_body);
        w->active--;
        return;
    }
    w->ops++;
    hist_record(w->lat, (uint64_t)(now - rd->sent) / 1000);
    if (c->up_to_date) {
        hist_record(w->completion, (uint64_t)(now - rd->started) / 1000);
        w->active--;
        return;
    }
    char offset[96];
    strcpy(offset, c->next_offset);
    reader_get(rd, offset);
}

static void reader_fail(hc_conn *c, const char *why) {
    reader *rd = c->user;
    count_error(rd->r.w, "GET catchup-%ld: %s", rd->stream, why);
    rd->r.w->active--;
}

static const hc_ops reader_ops = {.body = reader_body, .done = reader_done, .fail = reader_fail};

static void reader_start(role *r) {
    reader *rd = (reader *)r;
    rd->started = now_ns();
    reader_get(rd, "-1");
}

static void reader_destroy(role *r) {
    hc_free(((reader *)r)->c);
    free(r);
}

static void run_catchup(void) {
    long n = or_default(opt.clients, 1000);
    opt.messages = or_default(opt.messages, 2000);
    opt.size = or_default(opt.size, 1024);
    param_long("threads", opt.threads);
    param_long("clients", n);
    param_long("messages", opt.messages);
    param_long("size", opt.size);
    create_streams("catchup", n, "application/json");
    catchup_batches = (opt.messages + BATCH_MESSAGES - 1) / BATCH_MESSAGES;
    run_jobs("fill the streams", (size_t)(n * catchup_batches), 64, build_fill);

    phase_new(64 * 1024, true);
    for (long i = 0; i < n; i++) {
        reader *rd = xcalloc(1, sizeof *rd);
        add_role(&rd->r, (int)i, reader_start, reader_destroy);
        rd->c = hc_new(rd->r.w->loop, &reader_ops, rd);
        rd->stream = i;
    }
    /* A single pass: everything counts, and the window is the pass itself. */
    int64_t t0 = now_ns();
    atomic_store(&window_start, t0);
    atomic_store(&stop_at, t0 + (int64_t)(opt.timeout * SEC));
    res.s0 = sample_server();
    phase_start();
    while (atomic_load(&workers_exited) < nworkers && now_ns() < atomic_load(&stop_at)) sleep_ms(2);
    int64_t t1 = now_ns();
    res.s1 = sample_server();
    bool timed_out = atomic_load(&workers_exited) < nworkers;
    phase_end(&res.t);
    res.duration_s = (double)(t1 - t0) / SEC;
    res.ops = res.t.ops;
    res.bytes = res.t.bytes;
    hist *c = res.t.completion;
    if (timed_out) {
        fprintf(stderr, "loadgen: error: only %" PRIu64 " of %ld clients finished within --timeout %.0f s\n",
                c->count, n, opt.timeout);
        res.t.errors += (uint64_t)n - c->count;
    }
    sb_printf(&res.extra,
              ",\"clients_done\":%" PRIu64 ",\"body_bytes\":%" PRIu64 ",\"completion_ms\":{\"p50\":%.1f,\"p90\":%.1f"
              ",\"p99\":%.1f,\"max\":%.1f}",
              c->count, res.bytes, hist_quantile(c, 0.5) / 1e3, hist_quantile(c, 0.9) / 1e3,
              hist_quantile(c, 0.99) / 1e3, c->max / 1e3);
    sb_printf(&res.summary, "%" PRIu64 "/%ld clients done in %.2f s, completion ms p50 %.1f p99 %.1f max %.1f",
              c->count, n, res.duration_s, hist_quantile(c, 0.5) / 1e3, hist_quantile(c, 0.99) / 1e3, c->max / 1e3);
}

/* ---- tokens ---- */

static void run_tokens(void) {
    long n = or_default(opt.sessions, 100), k = or_default(opt.readers, 2);
    opt.rate = or_default(opt.rate, 30);
    opt.size = or_default(opt.size, 20);
    common_params();
    param_long("sessions", n);
    param_long("readers", k);
    param_long("rate", opt.rate);
    param_long("size", opt.size);
    groups_new(n, "tokens");
    create_streams("tokens", n, "application/json");
    phase_new(4096, false);
    /* A session's producer and readers share a thread. */
    for (long s = 0; s < n; s++) {
        for (long r = 0; r < k; r++) add_sub((int)s, &groups[s], SUB_TOKENS);
        add_writer((int)s, &groups[s], true, s, n);
    }
    phase_start();
    long connected = wait_connected(n * k, "token readers");
    run_window(2);
    phase_end(&res.t);
    uint64_t expected = groups_expected();
    res.ops = res.t.ops;
    res.bytes = res.t.bytes;
    sb_printf(&res.extra,
              ",\"connected\":%ld,\"sent\":%" PRIu64 ",\"sent_scheduled\":%" PRIu64 ",\"delivered\":%" PRIu64
              ",\"expected\":%" PRIu64,
              connected, groups_sent(), sends_scheduled(), res.t.ops, expected);
    sb_printf(&res.extra, ",\"reconnects\":%lu", atomic_load(&sse_reconnects));
    if (res.s0.ok && res.s1.ok)
        sb_printf(&res.extra, ",\"server_cpu_us_per_token\":%.3f",
                  res.t.ops ? (res.s1.cpu_ms - res.s0.cpu_ms) * 1000 / (double)res.t.ops : 0);
    sb_printf(&res.summary, "tokens delivered %" PRIu64 "/%" PRIu64 " (%" PRIu64 " of %" PRIu64 " sent)", res.t.ops,
              expected, groups_sent(), sends_scheduled());
}

/* ---- collab ----
 *
 * Sessions (docs/sessions.md) as a collaborative AI app uses them. Each
 * session has an agent that starts a run and streams 20-byte text-delta
 * chunks at --rate per second (--chunk-batch per request; 1, one chunk per
 * request, is the naive agent), and --participants people, each of whom
 * enters presence, attaches (GET /v1/session/{id}) and holds ONE SSE
 * connection on the session's log from the attach offset, makes an object
 * op batch every --op-every seconds and a presence update every
 * --presence-every seconds (on a second, keep-alive connection opened when
 * the run starts). Every delta carries its POST's send time ("<ns>|xxx"),
 * every op batch its send time as its batch id ("<ns>.<who>": headers.txid
 * of its event) and every presence update its send time as data.t, so a
 * participant matches each event it receives to its append.
 *
 * Before the run: server RSS with no sessions, with the sessions created,
 * and with the participants attached and idle. After it (--history N): one
 * session whose history holds N chunks in ended runs (batched posts), and
 * --attaches sequential attaches of it and as many of an empty session, in
 * alternating blocks: wall time and server CPU per attach of each. */

static struct {
    hist *big, *empty;        /* wall time per attach, us */
    double cpu_ms[2];         /* server CPU over the blocks of each kind */
    long count[2];            /* attaches of each kind */
    uint64_t bytes[2];        /* response size of the last attach of each kind */
    double wall_ms[2];        /* sum of wall times per kind */
    double build_s;           /* time to build the history */
    char big_path[192], empty_path[192];
} att;

static void session_path(char *dst, size_t size, const char *kind, long i) {
    int n = snprintf(dst, size, "/v1/session/%s-%s-%ld", opt.prefix, kind, i);
    for (int k = 12; k < n && dst[k]; k++)
        if (dst[k] == '/') dst[k] = '.'; /* a session id has no '/' */
}

/* Digits at p (up to end); -1 if none. */
static int64_t digits(const char *p, const char *end, const char **after) {
    int64_t v = 0;
    const char *q = p;
    while (q < end && *q >= '0' && *q <= '9') v = v * 10 + (*q++ - '0');
    if (after) *after = q;
    return q > p ? v : -1;
}

static uint64_t count_of(const char *p, size_t n, const char *what) {
    size_t wn = strlen(what);
    uint64_t k = 0;
    for (const char *end = p + n, *q = p; (q = memmem(q, (size_t)(end - q), what, wn)); q += wn) k++;
    return k;
}

/* -- participants -- */

enum { P_ENTER, P_ATTACH, P_LIVE };

/* Participants of sessions >= collab_gate wait for collab_open: RSS is
 * sampled with half of the sessions' participants in place and with all,
 * so the second half gives the marginal cost without one-off ones. */
static long collab_gate;
static atomic_bool collab_open;

typedef struct participant {
    role r;
    group *g;
    long sidx;
    char client[24];
    hc_conn *rc; /* presence enter, attach, then the SSE connection */
    hc_conn *wc; /* object ops and presence updates */
    int stage;
    sse_in sse;
    sbuf body;
    char offset[96];
    bool ever, live;
    timer retry, tick;
    int64_t next_op, next_pres, op_period, pres_period;
    double phase; /* 0..1: where in each period its sends fall */
    bool busy, want_op, want_pres;
    int sent_kind; /* 'o' or 'p' */
    int64_t sent_ts;
    long nops;
    int64_t last_seq; /* the run's last chunk seq seen, -1 none */
} participant;

static void p_send(participant *p) {
    char target[400], hdr[64];
    snprintf(hdr, sizeof hdr, "Weft-Client: %s\r\n", p->client);
    switch (p->stage) {
    case P_ENTER: {
        char body[96];
        int n = snprintf(body, sizeof body, "{\"action\":\"enter\",\"data\":{\"name\":\"%s\"}}", p->client);
        snprintf(target, sizeof target, "%s/presence", p->g->path);
        send_request(p->rc, request("POST", target, "application/json", hdr, body, (size_t)n));
        return;
    }
    case P_ATTACH:
        p->body.len = 0;
        send_request(p->rc, request("GET", p->g->path, NULL, NULL, NULL, 0));
        return;
    default:
        snprintf(target, sizeof target, "%s/log?offset=%s&live=sse&client=%s", p->g->path, p->offset, p->client);
        sse_reset(&p->sse);
        send_request(p->rc, request("GET", target, NULL, NULL, NULL, 0));
    }
}

static void p_retry(void *arg) { p_send(arg); }

static void p_gone(participant *p) {
    if (!p->live) return;
    p->live = false;
    atomic_fetch_sub(&subs_live, 1);
}

/* Everything a participant receives: events counted by receive time in the
 * window, tokens, ops and presence by their send time, chunk seqs checked. */
static void p_deliver(participant *p, const char *d, size_t n) {
    worker *w = p->r.w;
    const char *end = d + n, *q, *k;
    int64_t now = now_ns();
    if (in_window(now)) w->events += count_of(d, n, "\"headers\":{\"operation\":");
    for (q = d; (k = memmem(q, (size_t)(end - q), "{\"type\":\"chunk\",", 16)); q = k + 16) {
        const char *s = memmem(k, (size_t)(end - k), "\"seq\":", 6);
        if (!s) break;
        int64_t seq = digits(s + 6, end, NULL);
        if (seq < 0) continue;
        if (p->last_seq >= 0 && seq > p->last_seq + 1) w->seq_gaps += (uint64_t)(seq - p->last_seq - 1);
        if (p->last_seq >= 0 && seq <= p->last_seq) w->seq_dups++;
        p->last_seq = seq;
    }
    for (q = d; (k = memmem(q, (size_t)(end - q), "\"delta\":\"", 9)); q = k + 9) {
        int64_t ts = digits(k + 9, end, NULL);
        if (ts > 0) delivered(w, ts, (size_t)opt.size);
    }
    for (q = d; (k = memmem(q, (size_t)(end - q), "\"txid\":\"", 8)); q = k + 8) {
        int64_t ts = digits(k + 8, end, NULL);
        if (ts > 0 && in_window(ts)) {
            w->op_deliv++;
            hist_record(w->op_lat, now > ts ? (uint64_t)(now - ts) / 1000 : 0);
        }
    }
    for (q = d; (k = memmem(q, (size_t)(end - q), "\"data\":{\"t\":", 12)); q = k + 12) {
        int64_t ts = digits(k + 12, end, NULL);
        if (ts > 0 && in_window(ts)) {
            w->pres_deliv++;
            hist_record(w->pres_lat, now > ts ? (uint64_t)(now - ts) / 1000 : 0);
        }
    }
}

static void p_event(void *ctx, int event, const char *data, size_t len) {
    participant *p = ctx;
    if (event == 'c') {
        control_offset(data, p->offset, sizeof p->offset);
        if (!p->live) {
            p->live = true;
            atomic_fetch_add(&subs_live, 1);
        }
        if (!p->ever) {
            p->ever = true;
            atomic_fetch_add(&p->g->connected, 1);
        }
    } else if (event == 'd' && data) {
        p_deliver(p, data, len);
    }
}

static void p_rc_body(hc_conn *c, const char *d, size_t n) {
    participant *p = c->user;
    if (c->status != 200) return;
    if (p->stage == P_LIVE) sse_feed(&p->sse, d, n, p_event, p);
    else if (p->stage == P_ATTACH) sb_add(&p->body, d, n);
}

static void p_rc_done(hc_conn *c) {
    participant *p = c->user;
    worker *w = p->r.w;
    static const char *what[] = {"POST presence (enter)", "GET (attach)", "GET log (SSE)"};
    if (p->stage == P_LIVE) p_gone(p);
    if (p->stage == P_LIVE && c->status == 200) { /* the server ended the response: continue */
        atomic_fetch_add(&sse_reconnects, 1);
        p_send(p);
        return;
    }
    if (p->stage == P_LIVE && c->status == 410) { /* a new generation began before our offset: attach again */
        p->stage = P_ATTACH;
        p->last_seq = -1;
        p_send(p);
        return;
    }
    if (!ok_status(c->status)) {
        count_error(w, "%s %s: HTTP %d %s", what[p->stage], p->g->path, c->status, c->error_body);
        timer_set(w->loop, &p->retry, now_ns() + 500 * MS);
        return;
    }
    if (p->stage == P_ENTER) {
        p->stage = P_ATTACH;
    } else if (p->stage == P_ATTACH) {
        const char *k = p->body.p ? strstr(p->body.p, "\"offset\":\"") : NULL;
        const char *e = k ? strchr(k + 10, '"') : NULL;
        if (!e || (size_t)(e - k - 10) >= sizeof p->offset) {
            count_error(w, "GET %s (attach): no offset in the answer", p->g->path);
            timer_set(w->loop, &p->retry, now_ns() + 500 * MS);
            return;
        }
        memcpy(p->offset, k + 10, (size_t)(e - k - 10));
        p->offset[e - k - 10] = 0;
        p->stage = P_LIVE;
    }
    p_send(p);
}

static void p_rc_fail(hc_conn *c, const char *why) {
    participant *p = c->user;
    if (p->stage == P_LIVE) p_gone(p);
    if (p->stage != P_LIVE || producing(now_ns())) count_error(p->r.w, "%s: %s", p->g->path, why);
    timer_set(p->r.w->loop, &p->retry, now_ns() + 100 * MS);
}

static const hc_ops p_rc_ops = {.body = p_rc_body, .done = p_rc_done, .fail = p_rc_fail};

/* One write at a time on the write connection: an op, else presence. */
static void p_write(participant *p, int64_t now) {
    if (p->busy || !(p->want_op || p->want_pres)) return;
    char hdr[64], target[256];
    snprintf(hdr, sizeof hdr, "Weft-Client: %s\r\n", p->client);
    sbuf *body = &body_scratch;
    body->len = 0;
    p->sent_ts = now;
    if (p->want_op) {
        p->want_op = false;
        p->sent_kind = 'o';
        long k = p->nops / 2;
        if (p->nops++ % 2 == 0)
            sb_printf(body, "{\"batch\":\"%" PRId64 ".%s\",\"ops\":[{\"object\":\"votes\",\"op\":\"increment\",\"by\":1}]}",
                      now, p->client);
        else /* a list of stops: insert ours, drop the one we inserted three before */
            sb_printf(body,
                      "{\"batch\":\"%" PRId64 ".%s\",\"ops\":[{\"object\":\"stops\",\"op\":\"insert\",\"id\":\"%s-%ld\","
                      "\"value\":{\"n\":%ld}},{\"object\":\"stops\",\"op\":\"remove\",\"id\":\"%s-%ld\"}]}",
                      now, p->client, p->client, k, k, p->client, k - 3);
        snprintf(target, sizeof target, "%s/objects", p->g->path);
    } else {
        p->want_pres = false;
        p->sent_kind = 'p';
        sb_printf(body, "{\"action\":\"update\",\"data\":{\"t\":%" PRId64 "}}", now);
        snprintf(target, sizeof target, "%s/presence", p->g->path);
    }
    p->busy = true;
    send_request(p->wc, request("POST", target, "application/json", hdr, body->p, body->len));
}

static void p_tick(void *arg) {
    participant *p = arg;
    int64_t now = now_ns();
    if (!producing(now)) return;
    if (now >= p->next_op) {
        p->want_op = true;
        p->next_op += p->op_period;
        if (p->next_op < now - 100 * MS) p->next_op = now + p->op_period;
    }
    if (now >= p->next_pres) {
        p->want_pres = true;
        p->next_pres += p->pres_period;
        if (p->next_pres < now - 100 * MS) p->next_pres = now + p->pres_period;
    }
    p_write(p, now);
    timer_set(p->r.w->loop, &p->tick, p->next_op < p->next_pres ? p->next_op : p->next_pres);
}

/* Writes begin when the main thread starts the run. */
static void p_wait(void *arg) {
    participant *p = arg;
    int64_t start = atomic_load(&run_start);
    if (start == INT64_MAX) {
        timer_set(p->r.w->loop, &p->tick, now_ns() + 10 * MS);
        return;
    }
    p->next_op = start + (int64_t)(p->phase * (double)p->op_period);
    p->next_pres = start + (int64_t)(p->phase * (double)p->pres_period);
    timer_init(&p->tick, p_tick, p);
    timer_set(p->r.w->loop, &p->tick, p->next_op < p->next_pres ? p->next_op : p->next_pres);
}

static void p_wc_done(hc_conn *c) {
    participant *p = c->user;
    int64_t now = now_ns();
    p->busy = false;
    if (ok_status(c->status)) {
        if (in_window(p->sent_ts)) atomic_fetch_add(p->sent_kind == 'o' ? &p->g->sent_ops : &p->g->sent_pres, 1);
    } else {
        count_error(p->r.w, "POST %s/%s: HTTP %d %s", p->g->path, p->sent_kind == 'o' ? "objects" : "presence",
                    c->status, c->error_body);
    }
    if (producing(now)) p_write(p, now);
}

/* Not retried: the next op or update comes on schedule. */
static void p_wc_fail(hc_conn *c, const char *why) {
    participant *p = c->user;
    p->busy = false;
    if (producing(now_ns())) count_error(p->r.w, "POST %s (%c): %s", p->g->path, p->sent_kind, why);
}

static const hc_ops p_wc_ops = {.done = p_wc_done, .fail = p_wc_fail};

static void p_gate(void *arg) {
    participant *p = arg;
    if (!atomic_load(&collab_open)) {
        timer_set(p->r.w->loop, &p->retry, now_ns() + 5 * MS);
        return;
    }
    timer_init(&p->retry, p_retry, p);
    p_send(p);
}

static void p_start(role *r) {
    participant *p = (participant *)r;
    if (p->sidx >= collab_gate) {
        timer_init(&p->retry, p_gate, p);
        p_gate(p);
    } else {
        p_send(p);
    }
    timer_set(p->r.w->loop, &p->tick, now_ns());
}

static void p_destroy(role *r) {
    participant *p = (participant *)r;
    hc_free(p->rc);
    hc_free(p->wc);
    sse_free(&p->sse);
    sb_free(&p->body);
    free(p);
}

/* -- agents -- */

enum { A_RUN, A_START, A_STREAM };

typedef struct agent {
    role r;
    group *g;
    hc_conn *c;
    timer tick;
    int stage;
    int64_t period, offset_in_period, next_due, ts;
    bool busy, late;
} agent;

static const char agent_hdr[] = "Weft-Client: agent\r\n";

static void agent_tick(void *arg);

static void agent_send(agent *a, int64_t now) {
    char target[256];
    sbuf *body = &body_scratch;
    body->len = 0;
    a->ts = now;
    a->busy = true;
    if (a->stage == A_RUN) {
        snprintf(target, sizeof target, "%s/runs", a->g->path);
        sb_printf(body, "{\"id\":\"r0\"}");
    } else {
        snprintf(target, sizeof target, "%s/runs/r0/chunks", a->g->path);
        if (a->stage == A_START) {
            sb_printf(body, "{\"type\":\"text-start\",\"id\":\"t\"}");
        } else {
            long k = opt.chunk_batch;
            if (k > 1) sb_printf(body, "{\"chunks\":[");
            for (long i = 0; i < k; i++) {
                sb_printf(body, "%s{\"type\":\"text-delta\",\"id\":\"t\",\"delta\":\"%" PRId64 "|", i ? "," : "", now);
                int used = snprintf(NULL, 0, "%" PRId64 "|", now);
                if (opt.size > used) sb_fill(body, 'x', (size_t)(opt.size - used));
                sb_add(body, "\"}", 2);
            }
            if (k > 1) sb_add(body, "]}", 2);
        }
    }
    send_request(a->c, request("POST", target, "application/json", agent_hdr, body->p, body->len));
}

/* As writer_tick: one request per --chunk-batch tokens on schedule; late
 * sends go out when the previous answer comes; far behind skips ahead. */
static void agent_tick(void *arg) {
    agent *a = arg;
    int64_t now = now_ns();
    if (!producing(now)) return;
    if (a->stage != A_STREAM) {
        if (!a->busy) agent_send(a, now);
        return;
    }
    if (a->busy) {
        a->late = true;
        return;
    }
    agent_send(a, now);
    a->next_due += a->period;
    if (a->next_due < now - 100 * MS) a->next_due = now + a->period;
    timer_set(a->r.w->loop, &a->tick, a->next_due);
}

static void agent_wait(void *arg) {
    agent *a = arg;
    int64_t start = atomic_load(&run_start);
    if (start == INT64_MAX) {
        timer_set(a->r.w->loop, &a->tick, now_ns() + 10 * MS);
        return;
    }
    timer_init(&a->tick, agent_tick, a);
    agent_tick(a);
}

static void agent_done(hc_conn *c) {
    agent *a = c->user;
    int64_t now = now_ns();
    a->busy = false;
    /* 409 to starting the run: a retry after a lost answer; the run exists */
    bool ok = ok_status(c->status) || (a->stage == A_RUN && c->status == 409);
    if (!ok) {
        count_error(a->r.w, "POST %s/runs%s: HTTP %d %s", a->g->path, a->stage == A_RUN ? "" : "/r0/chunks",
                    c->status, c->error_body);
        if (a->stage != A_STREAM) timer_set(a->r.w->loop, &a->tick, now + 200 * MS);
    } else if (a->stage == A_STREAM) {
        if (in_window(a->ts)) atomic_fetch_add(&a->g->sent, (unsigned long)opt.chunk_batch);
    } else if (++a->stage == A_STREAM) {
        a->next_due = atomic_load(&run_start) + a->offset_in_period;
        while (a->next_due < now) a->next_due += a->period;
        timer_set(a->r.w->loop, &a->tick, a->next_due);
        return;
    } else {
        agent_send(a, now);
        return;
    }
    if (a->late) {
        a->late = false;
        agent_tick(a);
    }
}

static void agent_fail(hc_conn *c, const char *why) {
    agent *a = c->user;
    a->busy = false;
    if (producing(now_ns())) count_error(a->r.w, "POST %s (agent): %s", a->g->path, why);
    timer_set(a->r.w->loop, &a->tick, now_ns() + 50 * MS);
}

static const hc_ops agent_ops = {.done = agent_done, .fail = agent_fail};

static void agent_start(role *r) {
    agent *a = (agent *)r;
    timer_set(a->r.w->loop, &a->tick, now_ns());
}

static void agent_destroy(role *r) {
    hc_free(((agent *)r)->c);
    free(r);
}

/* -- chains: sequential requests on one connection (history, attaches) -- */

typedef struct chain chain;
struct chain {
    role r;
    hc_conn *c;
    long index, step;
    int64_t sent;
    uint64_t body_bytes;
    bool (*build)(chain *ch); /* ch->step's request into scratch; false: finished */
    void (*got)(chain *ch, int64_t lat_ns);
};

static atomic_bool chains_failed;

static void chain_next(chain *ch) {
    if (atomic_load(&chains_failed) || !ch->build(ch)) {
        ch->r.w->active--;
        return;
    }
    ch->body_bytes = 0;
    ch->sent = now_ns();
    send_request(ch->c, &scratch);
}

static void chain_body(hc_conn *c, const char *p, size_t n) {
    (void)p;
    ((chain *)c->user)->body_bytes += n;
}

static void chain_done(hc_conn *c) {
    chain *ch = c->user;
    int64_t lat = now_ns() - ch->sent;
    if (!ok_status(c->status)) {
        count_error(ch->r.w, "chain %ld step %ld: HTTP %d %s", ch->index, ch->step, c->status, c->error_body);
        atomic_store(&chains_failed, true);
        ch->r.w->active--;
        return;
    }
    if (ch->got) ch->got(ch, lat);
    ch->step++;
    chain_next(ch);
}

static void chain_fail(hc_conn *c, const char *why) {
    chain *ch = c->user;
    count_error(ch->r.w, "chain %ld step %ld: %s", ch->index, ch->step, why);
    atomic_store(&chains_failed, true);
    ch->r.w->active--;
}

static const hc_ops chain_ops = {.body = chain_body, .done = chain_done, .fail = chain_fail};

static void chain_start(role *r) { chain_next((chain *)r); }

static void chain_destroy(role *r) {
    hc_free(((chain *)r)->c);
    free(r);
}

static void run_chains(const char *what, long n, bool (*build)(chain *), void (*got)(chain *, int64_t)) {
    int64_t t0 = now_ns();
    atomic_store(&chains_failed, false);
    phase_new(64 * 1024, true);
    for (long i = 0; i < n; i++) {
        chain *ch = xcalloc(1, sizeof *ch);
        add_role(&ch->r, (int)i, chain_start, chain_destroy);
        ch->c = hc_new(ch->r.w->loop, &chain_ops, ch);
        ch->index = i;
        ch->build = build;
        ch->got = got;
    }
    phase_start();
    int64_t deadline = t0 + (int64_t)(opt.timeout * SEC);
    while (atomic_load(&workers_exited) < nworkers && now_ns() < deadline) sleep_ms(2);
    bool timed_out = atomic_load(&workers_exited) < nworkers;
    phase_end(NULL);
    if (atomic_load(&chains_failed)) die("%s failed", what);
    if (timed_out) die("%s: not done within --timeout %.0f s", what, opt.timeout);
    fprintf(stderr, "loadgen: %s: %.2f s\n", what, (double)(now_ns() - t0) / SEC);
}

/* The history: runs of HIST_RUN_CHUNKS chunks (text-start, deltas,
 * text-end), posted HIST_BATCH per request, each run then ended. */
#define HIST_RUN_CHUNKS 10000
#define HIST_BATCH 250

static long hist_runs(void) { return (opt.history + HIST_RUN_CHUNKS - 1) / HIST_RUN_CHUNKS; }

static long hist_run_chunks(long run) {
    long left = opt.history - run * HIST_RUN_CHUNKS;
    return left < HIST_RUN_CHUNKS ? left : HIST_RUN_CHUNKS;
}

static bool build_hist_setup(chain *ch) {
    if (ch->step > 1) return false;
    request("PUT", ch->step == 0 ? att.big_path : att.empty_path, NULL, NULL, NULL, 0);
    return true;
}

static bool build_hist(chain *ch) {
    long nchunks = hist_run_chunks(ch->index), nbatches = (nchunks + HIST_BATCH - 1) / HIST_BATCH;
    char target[256];
    sbuf *body = &body_scratch;
    body->len = 0;
    if (ch->step == 0) {
        snprintf(target, sizeof target, "%s/runs", att.big_path);
        sb_printf(body, "{\"id\":\"h%ld\"}", ch->index);
    } else if (ch->step <= nbatches) {
        snprintf(target, sizeof target, "%s/runs/h%ld/chunks", att.big_path, ch->index);
        long first = (ch->step - 1) * HIST_BATCH, last = first + HIST_BATCH;
        if (last > nchunks) last = nchunks;
        sb_add(body, "{\"chunks\":[", 11);
        for (long j = first; j < last; j++) {
            if (j > first) sb_add(body, ",", 1);
            if (j == 0)
                sb_printf(body, "{\"type\":\"text-start\",\"id\":\"t\"}");
            else if (j == nchunks - 1)
                sb_printf(body, "{\"type\":\"text-end\",\"id\":\"t\"}");
            else /* 20 bytes of text */
                sb_printf(body, "{\"type\":\"text-delta\",\"id\":\"t\",\"delta\":\"%-19ld \"}", j);
        }
        sb_add(body, "]}", 2);
    } else if (ch->step == nbatches + 1) {
        snprintf(target, sizeof target, "%s/runs/h%ld/end", att.big_path, ch->index);
        sb_printf(body, "{\"reason\":\"complete\"}");
    } else {
        return false;
    }
    request("POST", target, "application/json", agent_hdr, body->p, body->len);
    return true;
}

/* Attaches alternate in ATTACH_BLOCKS blocks, big first; the server's CPU
 * is sampled between blocks (the server is otherwise idle). */
#define ATTACH_BLOCKS 8
static sample att_cpu_at;

static long attach_block(long step) {
    long per = opt.attaches * 2 / ATTACH_BLOCKS;
    return step / (per > 0 ? per : 1);
}

static bool build_attach(chain *ch) {
    long total = opt.attaches * 2;
    bool first = ch->step == 0, boundary = first || ch->step >= total ||
                                          attach_block(ch->step) != attach_block(ch->step - 1);
    if (boundary) {
        sample s = sample_server();
        if (!first) att.cpu_ms[attach_block(ch->step - 1) % 2] += s.cpu_ms - att_cpu_at.cpu_ms;
        att_cpu_at = s;
    }
    if (ch->step >= total) return false;
    request("GET", attach_block(ch->step) % 2 ? att.empty_path : att.big_path, NULL, NULL, NULL, 0);
    return true;
}

static void got_attach(chain *ch, int64_t lat) {
    int kind = (int)(attach_block(ch->step) % 2);
    hist_record(kind ? att.empty : att.big, (uint64_t)lat / 1000);
    att.count[kind]++;
    att.wall_ms[kind] += (double)lat / MS;
    att.bytes[kind] = ch->body_bytes;
}


static void collab_history(void) {
    session_path(att.big_path, sizeof att.big_path, "history", 0);
    session_path(att.empty_path, sizeof att.empty_path, "empty", 0);
    att.big = hist_new();
    att.empty = hist_new();
    int64_t t0 = now_ns();
    run_chains("create the history and empty sessions", 1, build_hist_setup, NULL);
    char what[96];
    snprintf(what, sizeof what, "history of %ld chunks in %ld ended runs", opt.history, hist_runs());
    run_chains(what, hist_runs(), build_hist, NULL);
    att.build_s = (double)(now_ns() - t0) / SEC;
    if (opt.attaches > 0) run_chains("attaches", 1, build_attach, got_attach);
}

static long create_base;

static void build_create_session(size_t i) {
    char path[192];
    session_path(path, sizeof path, create_kind, create_base + (long)i);
    request("PUT", path, NULL, NULL, NULL, 0);
}

static void run_collab(void) {
    long n = or_default(opt.sessions, 100), np = opt.participants;
    opt.rate = or_default(opt.rate, 30);
    opt.size = or_default(opt.size, 20);
    common_params();
    param_long("sessions", n);
    param_long("participants", np);
    param_long("rate", opt.rate);
    param_long("size", opt.size);
    param_long("chunk_batch", opt.chunk_batch);
    sb_printf(&res.params, ",\"op_every\":%g,\"presence_every\":%g", opt.op_every, opt.presence_every);
    param_long("history", opt.history);
    param_long("attaches", opt.attaches);

    groups_new(n, "collab");
    for (long i = 0; i < n; i++) session_path(groups[i].path, sizeof groups[i].path, "collab", i);
    /* RSS: none, half and all of the sessions created; half and all of
     * the participants in place */
    long half = n / 2;
    sleep_ms(500); /* a server just started frees its start-up memory */
    sample s_none = sample_server();
    create_kind = "collab";
    create_base = 0;
    run_jobs("create half of the sessions", (size_t)half, 64, build_create_session);
    sleep_ms(300);
    sample s_half_sessions = sample_server();
    create_base = half;
    run_jobs("create the other half", (size_t)(n - half), 64, build_create_session);
    sleep_ms(300);
    sample s_sessions = sample_server();
    collab_gate = half;
    atomic_store(&collab_open, false);

    phase_new(4096, false);
    for (long s = 0; s < n; s++) {
        for (long k = 0; k < np; k++) {
            participant *p = xcalloc(1, sizeof *p);
            add_role(&p->r, (int)s, p_start, p_destroy);
            p->rc = hc_new(p->r.w->loop, &p_rc_ops, p);
            p->wc = hc_new(p->r.w->loop, &p_wc_ops, p);
            p->g = &groups[s];
            p->sidx = s;
            snprintf(p->client, sizeof p->client, "p%ld", k);
            p->last_seq = -1;
            p->op_period = (int64_t)(opt.op_every * SEC);
            p->pres_period = (int64_t)(opt.presence_every * SEC);
            /* spread over the periods, the same way for every run */
            p->phase = (double)(((uint64_t)(s * np + k) * 2654435761u) % 1000003u) / 1000003.0;
            timer_init(&p->retry, p_retry, p);
            timer_init(&p->tick, p_wait, p);
        }
        agent *a = xcalloc(1, sizeof *a);
        add_role(&a->r, (int)s, agent_start, agent_destroy);
        a->c = hc_new(a->r.w->loop, &agent_ops, a);
        a->g = &groups[s];
        a->period = SEC * opt.chunk_batch / opt.rate;
        a->offset_in_period = a->period * s / n;
        timer_init(&a->tick, agent_wait, a);
    }
    phase_start();
    long connected_half = half ? wait_connected(half * np, "participants of half of the sessions") : 0;
    sleep_ms(300); /* the presence enters' deliveries settle */
    sample s_half_idle = sample_server();
    atomic_store(&collab_open, true);
    long connected = wait_connected(n * np, "participants");
    sleep_ms(300);
    sample s_idle = sample_server();
    run_window(opt.grace);
    long live = atomic_load(&subs_live);
    phase_end(&res.t);
    if (opt.history > 0) collab_history();

    res.ops = res.t.ops;
    res.bytes = res.t.bytes;
    uint64_t expected = groups_expected(), ops_sent = 0, pres_sent = 0, ops_expected = 0, pres_expected = 0;
    for (long i = 0; i < n; i++) {
        long c = atomic_load(&groups[i].connected);
        ops_sent += atomic_load(&groups[i].sent_ops);
        pres_sent += atomic_load(&groups[i].sent_pres);
        ops_expected += atomic_load(&groups[i].sent_ops) * (uint64_t)c;
        pres_expected += atomic_load(&groups[i].sent_pres) * (uint64_t)c;
    }
    totals *t = &res.t;
    sb_printf(&res.extra,
              ",\"connected\":%ld,\"connected_end\":%ld,\"reconnects\":%lu,\"tokens_sent\":%" PRIu64
              ",\"tokens_scheduled\":%" PRIu64 ",\"tokens_delivered\":%" PRIu64 ",\"tokens_expected\":%" PRIu64
              ",\"ops_sent\":%" PRIu64 ",\"ops_delivered\":%" PRIu64 ",\"ops_expected\":%" PRIu64
              ",\"presence_sent\":%" PRIu64 ",\"presence_delivered\":%" PRIu64 ",\"presence_expected\":%" PRIu64
              ",\"events_delivered\":%" PRIu64 ",\"seq_gaps\":%" PRIu64 ",\"seq_dups\":%" PRIu64,
              connected, live, atomic_load(&sse_reconnects), groups_sent(), sends_scheduled(), t->ops, expected,
              ops_sent, t->op_deliv, ops_expected, pres_sent, t->pres_deliv, pres_expected, t->events, t->seq_gaps,
              t->seq_dups);
    sb_printf(&res.extra,
              ",\"op_latency_us\":{\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64
              ",\"count\":%" PRIu64 "},\"presence_latency_us\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64
              ",\"max\":%" PRIu64 ",\"count\":%" PRIu64 "}",
              hist_quantile(t->op_lat, 0.5), hist_quantile(t->op_lat, 0.9), hist_quantile(t->op_lat, 0.99),
              t->op_lat->max, t->op_lat->count, hist_quantile(t->pres_lat, 0.5), hist_quantile(t->pres_lat, 0.99),
              t->pres_lat->max, t->pres_lat->count);
    bool srv = res.s0.ok && res.s1.ok;
    double cpu_ms = srv ? res.s1.cpu_ms - res.s0.cpu_ms : 0;
    if (srv) {
        sb_printf(&res.extra, ",\"server_cpu_us_per_token\":%.3f,\"server_cpu_us_per_event\":%.3f",
                  t->ops ? cpu_ms * 1000 / (double)t->ops : 0, t->events ? cpu_ms * 1000 / (double)t->events : 0);
    }
    bool mem = s_none.ok && s_sessions.ok && s_idle.ok && s_half_sessions.ok && s_half_idle.ok;
    double per_session = mem ? (double)(s_sessions.rss_kb - s_none.rss_kb) * 1024.0 / (double)n : 0;
    double per_part = mem && connected ? (double)(s_idle.rss_kb - s_sessions.rss_kb) * 1024.0 / (double)connected : 0;
    double per_session2 = mem && n > half ? (double)(s_sessions.rss_kb - s_half_sessions.rss_kb) * 1024.0 / (double)(n - half) : 0;
    double per_part2 = mem && connected > connected_half
                           ? (double)(s_idle.rss_kb - s_half_idle.rss_kb) * 1024.0 / (double)(connected - connected_half)
                           : 0;
    if (mem)
        sb_printf(&res.extra,
                  ",\"server_rss_kb_no_sessions\":%ld,\"server_rss_kb_half_sessions\":%ld,\"server_rss_kb_sessions\":%ld,"
                  "\"server_rss_kb_half_idle\":%ld,\"server_rss_kb_idle\":%ld,"
                  "\"rss_per_session_bytes\":%.0f,\"rss_per_idle_participant_bytes\":%.0f,"
                  "\"rss_per_session_bytes_second_half\":%.0f,\"rss_per_idle_participant_bytes_second_half\":%.0f",
                  s_none.rss_kb, s_half_sessions.rss_kb, s_sessions.rss_kb, s_half_idle.rss_kb, s_idle.rss_kb,
                  per_session, per_part, per_session2, per_part2);
    sb_printf(&res.summary, "tokens delivered %" PRIu64 "/%" PRIu64 " (%" PRIu64 " of %" PRIu64 " sent)", t->ops,
              expected, groups_sent(), sends_scheduled());
    sb_printf(&res.summary, ", ops %" PRIu64 "/%" PRIu64 " p50 %" PRIu64 " p99 %" PRIu64 " us", t->op_deliv,
              ops_expected, hist_quantile(t->op_lat, 0.5), hist_quantile(t->op_lat, 0.99));
    sb_printf(&res.summary, ", presence %" PRIu64 "/%" PRIu64, t->pres_deliv, pres_expected);
    if (t->seq_gaps || t->seq_dups)
        sb_printf(&res.summary, ", CHUNK SEQ GAPS %" PRIu64 " DUPS %" PRIu64, t->seq_gaps, t->seq_dups);
    if (srv)
        sb_printf(&res.summary, ", %" PRIu64 " events, %.1f us cpu/event", t->events,
                  t->events ? cpu_ms * 1000 / (double)t->events : 0);
    if (mem)
        sb_printf(&res.summary, ", rss %.0f B/session %.0f B/idle participant (second half: %.0f, %.0f)", per_session,
                  per_part, per_session2, per_part2);
    if (opt.history > 0 && att.count[0] && att.count[1]) {
        double wall[2], cpu[2];
        for (int k = 0; k < 2; k++) {
            wall[k] = att.wall_ms[k] / (double)att.count[k];
            cpu[k] = att.cpu_ms[k] / (double)att.count[k];
        }
        sb_printf(&res.extra,
                  ",\"attach\":{\"history_chunks\":%ld,\"build_s\":%.2f,\"count\":%ld,\"bytes\":%" PRIu64
                  ",\"wall_ms_mean\":%.3f,\"wall_us_p50\":%" PRIu64 ",\"wall_us_p99\":%" PRIu64
                  ",\"server_cpu_ms\":%.3f,\"empty_count\":%ld,\"empty_bytes\":%" PRIu64
                  ",\"empty_wall_ms_mean\":%.3f,\"empty_wall_us_p50\":%" PRIu64 ",\"empty_server_cpu_ms\":%.3f"
                  ",\"server_ms\":%.3f,\"server_cpu_ms_net\":%.3f}",
                  opt.history, att.build_s, att.count[0], att.bytes[0], wall[0], hist_quantile(att.big, 0.5),
                  hist_quantile(att.big, 0.99), cpu[0], att.count[1], att.bytes[1], wall[1],
                  hist_quantile(att.empty, 0.5), cpu[1], wall[0] - wall[1], cpu[0] - cpu[1]);
        sb_printf(&res.summary,
                  ", attach of %ld chunks: %.2f ms (%" PRIu64 " B; empty %.2f ms): %.2f ms server time, cpu %.2f ms",
                  opt.history, wall[0], att.bytes[0], wall[1], wall[0] - wall[1], cpu[0] - cpu[1]);
    }
    if (att.big) {
        hist_free(att.big);
        hist_free(att.empty);
    }
}

/* ---- idle ---- */

static void run_idle(void) {
    long n = or_default(opt.subscribers, 1000);
    long s = or_default(opt.streams, n / 100 > 0 ? n / 100 : 1);
    common_params();
    param_long("subscribers", n);
    param_long("streams", s);
    groups_new(s, "idle");
    create_streams("idle", s, "text/plain");
    sample before = sample_server();
    phase_new(2048, false);
    for (long i = 0; i < n; i++) add_sub((int)i, &groups[i % s], SUB_IGNORE);
    phase_start();
    long connected = wait_connected(n, "subscribers");
    run_window(0);
    long live = atomic_load(&subs_live);
    phase_end(&res.t);
    bool srv = before.ok && res.s1.ok;
    double per_conn = srv && connected ? (double)(res.s1.rss_kb - before.rss_kb) * 1024.0 / (double)connected : 0;
    sb_printf(&res.extra, ",\"connected\":%ld,\"connected_end\":%ld,\"reconnects\":%lu", connected, live,
              atomic_load(&sse_reconnects));
    if (srv)
        sb_printf(&res.extra, ",\"server_rss_kb_before_connect\":%ld,\"rss_per_conn_bytes\":%.0f", before.rss_kb,
                  per_conn);
    sb_printf(&res.summary, "%ld connected (%ld at the end)", connected, live);
    if (srv)
        sb_printf(&res.summary, ", rss before connecting %.1f MB, %.0f bytes/conn", before.rss_kb / 1024.0, per_conn);
}

/* ---- main ---- */

/* Fails early and clearly when nothing listens at --url. */
static void check_reachable(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    int err = 0;
    if (connect(fd, (struct sockaddr *)&opt.addr, sizeof opt.addr) < 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            socklen_t len = sizeof err;
            if (poll(&p, 1, 3000) != 1)
                err = ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        }
    }
    close(fd);
    if (err) die("cannot connect to %s: %s", opt.host, strerror(err));
}

/* Use every descriptor we may: the hard limit bounds the connection count. */
static void raise_fd_limit(long need) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (rlim_t)need + 32 > rl.rlim_cur)
        die("this run needs about %ld file descriptors, the limit is %llu", need + 32,
            (unsigned long long)rl.rlim_cur);
}

/* Connections the workload will hold at once. */
static long connections_needed(void) {
    const char *w = opt.workload;
    /* Setup runs over 64 connections. */
    if (!strcmp(w, "append")) return lmax(or_default(opt.connections, 64), 64);
    if (!strcmp(w, "sse")) return or_default(opt.subscribers, 100) + 1;
    if (!strcmp(w, "longpoll")) return or_default(opt.readers, 100) + or_default(opt.streams, 10);
    if (!strcmp(w, "catchup")) return lmax(or_default(opt.clients, 1000), 64);
    if (!strcmp(w, "tokens")) return or_default(opt.sessions, 100) * (or_default(opt.readers, 2) + 1);
    /* per session: the agent, and each participant's SSE and write connections */
    if (!strcmp(w, "collab")) return lmax(or_default(opt.sessions, 100) * (2 * opt.participants + 1), 64);
    return or_default(opt.subscribers, 1000);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    static const struct {
        const char *name;
        void (*run)(void);
    } workloads[] = {
        {"append", run_append}, {"sse", run_sse},       {"longpoll", run_longpoll},
        {"catchup", run_catchup}, {"tokens", run_tokens}, {"idle", run_idle},
        {"collab", run_collab},
    };
    void (*run)(void) = NULL;
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
        if (strcmp(opt.workload, workloads[i].name) == 0) run = workloads[i].run;
    if (!run) die("unknown workload \"%s\" (see loadgen --help)", opt.workload);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(connections_needed() + (long)opt.threads);
    check_reachable();
    res.t.lat = hist_new();
    res.t.completion = hist_new();
    res.t.op_lat = hist_new();
    res.t.pres_lat = hist_new();
    run();
    report();
    hist_free(res.t.lat);
    hist_free(res.t.completion);
    hist_free(res.t.op_lat);
    hist_free(res.t.pres_lat);
    sb_free(&res.params);
    sb_free(&res.extra);
    sb_free(&res.summary);
    free(groups);
    return 0;
}
