/* urlcheck.c — which webhook targets Weft will call (PROTOCOL.md 12.8).
 *
 * Loopback (127.0.0.0/8, ::1, localhost) is the development exception: it
 * is always allowed, over http or https. Private (RFC 1918, CGNAT, IPv6
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
    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a))
        return classify_v4((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15]);
    if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LINKLOCAL(a) || IN6_IS_ADDR_SITELOCAL(a) ||
        IN6_IS_ADDR_MULTICAST(a) || (b[0] & 0xfe) == 0xfc)
        return ADDR_PRIVATE;
    return ADDR_PUBLIC;
}

bool urlcheck_addr(const struct sockaddr *sa, bool allow_private) {
    addr_class k;
    if (sa->sa_family == AF_INET) k = classify_v4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    else if (sa->sa_family == AF_INET6) k = classify_v6(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    else return false;
    return k != ADDR_PRIVATE || allow_private;
}

const char *urlcheck_url(const char *url, bool allow_private) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    const char *why = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        why = "webhook.url is not an absolute URL";
        goto done;
    }
    bool https = strcasecmp(scheme, "https") == 0;
    if (!https && strcasecmp(scheme, "http") != 0) {
        why = "webhook.url must be https (or http to localhost)";
        goto done;
    }
    /* a literal address, with IPv6 brackets stripped */
    size_t hn = strlen(host);
    char lit[64] = "";
    if (host[0] == '[' && hn >= 2 && hn - 2 < sizeof lit) memcpy(lit, host + 1, hn - 2), lit[hn - 2] = 0;
    else if (hn < sizeof lit) strcpy(lit, host);
    struct in_addr v4;
    struct in6_addr v6;
    addr_class k = ADDR_PUBLIC;
    if (inet_pton(AF_INET, lit, &v4) == 1) k = classify_v4(ntohl(v4.s_addr));
    else if (inet_pton(AF_INET6, lit, &v6) == 1) k = classify_v6(&v6);
    else if (strcasecmp(host, "localhost") == 0) k = ADDR_LOOPBACK;
    if (k == ADDR_PRIVATE && !allow_private)
        why = "webhook.url points at a private, link-local or reserved address (--webhook-allow-private allows it)";
    else if (k == ADDR_PUBLIC && !https && !allow_private)
        why = "webhook.url must be https (http only to localhost, or with --webhook-allow-private)";
done:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return why;
}
