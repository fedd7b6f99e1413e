/* urlcheck.c — which webhook targets Weft will call (PROTOCOL.md 12.8).
 *
 * Loopback (127.0.0.0/8, ::1, localhost) is the development exception: a
 * URL naming it so is allowed, over http or https; a host name that
 * resolves to it is not. Private (RFC 1918, CGNAT, IPv6
 * unique-local), link-local (cloud metadata lives there), unspecified,
 * multicast and reserved addresses are refused unless --webhook-allow-
 * private, which also allows plain http to them; anywhere else must be
 * https. The URL is checked when a subscription is created, and every
 * address a host name resolves to is checked again at connect time (DNS
 * can point anywhere).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "subs_int.h"

typedef enum addr_class { ADDR_PUBLIC, ADDR_LOOPBACK, ADDR_PRIVATE } addr_class;

static addr_class classify_v4(uint32_t a) {
    uint8_t b0 = (uint8_t)(a >> 24), b1 = (uint8_t)(a >> 16);
    if (b0 == 127) return ADDR_LOOPBACK;
    if (b0 == 0 || b0 == 10 || b0 >= 224) return ADDR_PRIVATE;      /* this net, private, multicast, reserved */
    if (b0 == 169 && b1 == 254) return ADDR_PRIVATE;                /* link-local, metadata */
    if (b0 == 172 && (b1 & 0xf0) == 16) return ADDR_PRIVATE;
    if (b0 == 192 && b1 == 168) return ADDR_PRIVATE;
    if (b0 == 100 && (b1 & 0xc0) == 64) return ADDR_PRIVATE;        /* CGNAT */
    if (b0 == 198 && (b1 & 0xfe) == 18) return ADDR_PRIVATE;        /* benchmarking */
    return ADDR_PUBLIC;
}

static addr_class classify_v6(const struct in6_addr *a) {
    const uint8_t *b = a->s6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a)) return ADDR_LOOPBACK;
    bool nat64 = b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b; /* 64:ff9b::/96 */
    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a) || nat64)
        return classify_v4((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15]);
    if (b[0] == 0x20 && b[1] == 0x02) /* 6to4: 2002:V4ADDR::/48 */
        return classify_v4((uint32_t)b[2] << 24 | (uint32_t)b[3] << 16 | (uint32_t)b[4] << 8 | b[5]);
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) return ADDR_PRIVATE; /* Teredo: a tunnel anywhere */
    if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LINKLOCAL(a) || IN6_IS_ADDR_SITELOCAL(a) ||
        IN6_IS_ADDR_MULTICAST(a) || (b[0] & 0xfe) == 0xfc)
        return ADDR_PRIVATE;
    return ADDR_PUBLIC;
}

bool urlcheck_addr(const struct sockaddr *sa, bool allow_private, bool allow_loopback) {
    addr_class k;
    if (sa->sa_family == AF_INET) k = classify_v4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    else if (sa->sa_family == AF_INET6) k = classify_v6(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    else return false;
    return k == ADDR_PUBLIC || (k == ADDR_LOOPBACK && allow_loopback) || (k == ADDR_PRIVATE && allow_private);
}

/* The class of url's host as written (a literal address or localhost; any
 * other name is public until resolved); false if url is not absolute
 * http(s). */
static bool url_host(const char *url, bool *https, addr_class *k) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK;
    if (ok) {
        *https = strcasecmp(scheme, "https") == 0;
        ok = *https || strcasecmp(scheme, "http") == 0;
        size_t hn = strlen(host);
        char lit[64] = ""; /* IPv6 without its brackets */
        if (host[0] == '[' && hn >= 2 && hn - 2 < sizeof lit) memcpy(lit, host + 1, hn - 2), lit[hn - 2] = 0;
        else if (hn < sizeof lit) strcpy(lit, host);
        struct in_addr v4;
        struct in6_addr v6;
        *k = ADDR_PUBLIC;
        if (inet_pton(AF_INET, lit, &v4) == 1) *k = classify_v4(ntohl(v4.s_addr));
        else if (inet_pton(AF_INET6, lit, &v6) == 1) *k = classify_v6(&v6);
        else if (strcasecmp(host, "localhost") == 0) *k = ADDR_LOOPBACK;
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

bool urlcheck_loopback_host(const char *url) {
    bool https;
    addr_class k;
    return url_host(url, &https, &k) && k == ADDR_LOOPBACK;
}

const char *urlcheck_url(const char *url, bool allow_private) {
    bool https;
    addr_class k;
    if (!url_host(url, &https, &k)) return "webhook.url must be an absolute https URL (or http to localhost)";
    if (k == ADDR_PRIVATE && !allow_private)
        return "webhook.url points at a private, link-local or reserved address (--webhook-allow-private allows it)";
    if (k == ADDR_PUBLIC && !https && !allow_private)
        return "webhook.url must be https (http only to localhost, or with --webhook-allow-private)";
    return NULL;
}
