/* test_streams.c — the stream layer as an object (src/stream/stream.h), over
 * real sockets: two open in one process, each on its own directory and
 * HTTP server, keep their streams apart; a long-poll on one is woken by an
 * append to it; closing one and opening it again recovers its streams while
 * the other goes on serving. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "stream/stream.h"

typedef struct node {
    char dir[64];
    int port;
    streams *st;
    http_server *srv;
} node;

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("free_port");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void node_start(node *n) {
    char err[256];
    streams_config cfg = {
        .dir = n->dir,
        .durability = STORE_DURABLE,
        .limits = {.long_poll_timeout_ms = 10000, .sse_max_duration_ms = 10000,
                   .read_chunk = 1 << 20, .json_max_depth = 64, .max_streams = 100,
                   .max_path = 1024, .cors = true},
    };
    n->st = streams_open(&cfg, err, sizeof err);
    if (!n->st) {
        fprintf(stderr, "streams_open %s: %s\n", n->dir, err);
        exit(1);
    }
    n->port = free_port();
    http_server_config hc = {
        .host = "127.0.0.1", .port = n->port, .threads = 1, .max_head_bytes = 16384,
        .max_target_len = 8192, .max_body = 1 << 20, .request_timeout_ms = 10000,
        .idle_timeout_ms = 10000, .write_timeout_ms = 10000, .max_conns = 100,
        .handler = streams_handle, .handler_ctx = n->st,
    };
    n->srv = http_server_start(&hc, err, sizeof err);
    if (!n->srv) {
        fprintf(stderr, "http_server_start: %s\n", err);
        exit(1);
    }
}

static void node_stop(node *n) {
    http_server_stop_accepting(n->srv);
    streams_detach(n->st);
    http_server_free(n->srv);
    streams_close(n->st);
}

typedef struct reply {
    int status;
    char head[2048];
    char body[4096];
} reply;

/* One request on a new connection (Connection: close); the whole reply. */
static void request(int port, const char *method, const char *target, const char *ctype,
                    const char *body, reply *r) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(r, 0, sizeof *r);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        close(fd);
        return;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, target, ctype ? "Content-Type: " : "", ctype ? ctype : "",
                     ctype ? "\r\n" : "", body ? strlen(body) : 0, body ? body : "");
    if (write(fd, req, (size_t)n) != n) perror("write");
    char all[8192];
    size_t got = 0;
    ssize_t k;
    while (got < sizeof all - 1 && (k = read(fd, all + got, sizeof all - 1 - got)) > 0) got += (size_t)k;
    close(fd);
    all[got] = 0;
    char *end = strstr(all, "\r\n\r\n");
    if (!end || sscanf(all, "HTTP/1.1 %d", &r->status) != 1) return;
    snprintf(r->head, sizeof r->head, "%.*s", (int)(end - all), all);
    snprintf(r->body, sizeof r->body, "%s", end + 4);
}

/* The value of a response header (case as the server writes it). */
static const char *header(const reply *r, const char *name, char *out, size_t outlen) {
    char line[128];
    snprintf(line, sizeof line, "\r\n%s: ", name);
    const char *p = strstr(r->head, line);
    out[0] = 0;
    if (!p) return out;
    p += strlen(line);
    size_t n = strcspn(p, "\r");
    snprintf(out, outlen, "%.*s", (int)n, p);
    return out;
}

typedef struct poll_arg {
    int port;
    char target[256];
    reply r;
} poll_arg;

static void *long_poll(void *arg) {
    poll_arg *p = arg;
    request(p->port, "GET", p->target, NULL, NULL, &p->r);
    return NULL;
}

static void test_two_objects(void) {
    node a = {0}, b = {0};
    snprintf(a.dir, sizeof a.dir, "/tmp/weft-test-streams-a-%d", getpid());
    snprintf(b.dir, sizeof b.dir, "/tmp/weft-test-streams-b-%d", getpid());
    node_start(&a);
    node_start(&b);
    reply r;

    request(a.port, "PUT", "/v1/stream/chat", "text/plain", "hello", &r);
    CHECK_EQ_INT(r.status, 201);
    request(b.port, "GET", "/v1/stream/chat?offset=-1", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 404);
    request(b.port, "PUT", "/v1/stream/chat", "application/json", "[1,2]", &r);
    CHECK_EQ_INT(r.status, 201);
    CHECK_EQ_INT(streams_count(a.st), 1);
    CHECK_EQ_INT(streams_count(b.st), 1);

    request(a.port, "GET", "/v1/stream/chat?offset=-1", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strcmp(r.body, "hello") == 0);
    request(b.port, "GET", "/v1/stream/chat?offset=-1", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strcmp(r.body, "[1,\n2]") == 0); /* as stored: a message a line */

    /* A long-poll at a's tail is answered by an append to a, not to b. */
    char off[64];
    request(a.port, "GET", "/v1/stream/chat?offset=now", NULL, NULL, &r);
    header(&r, "Stream-Next-Offset", off, sizeof off);
    CHECK(strlen(off) == 33);
    poll_arg p = {.port = a.port};
    snprintf(p.target, sizeof p.target, "/v1/stream/chat?offset=%s&live=long-poll", off);
    pthread_t t;
    pthread_create(&t, NULL, long_poll, &p);
    request(b.port, "POST", "/v1/stream/chat", "application/json", "[3]", &r);
    CHECK_EQ_INT(r.status, 204);
    request(a.port, "POST", "/v1/stream/chat", "text/plain", " world", &r);
    CHECK_EQ_INT(r.status, 204);
    pthread_join(t, NULL);
    CHECK_EQ_INT(p.r.status, 200);
    CHECK(strcmp(p.r.body, " world") == 0);

    /* Close a and open it again: its streams come back; b serves on. */
    node_stop(&a);
    request(b.port, "GET", "/v1/stream/chat?offset=-1", NULL, NULL, &r);
    CHECK(strcmp(r.body, "[1,\n2,\n3]") == 0);
    node_start(&a);
    request(a.port, "GET", "/v1/stream/chat?offset=-1", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strcmp(r.body, "hello world") == 0);
    CHECK_EQ_INT(streams_count(a.st), 1);

    node_stop(&a);
    node_stop(&b);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", a.dir, b.dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    test_two_objects();
    return check_summary("test_streams");
}
