/* base64.h — standard base64 (RFC 4648, with padding) for SSE data events
 * of binary streams. */
#ifndef WEFT_BASE64_H
#define WEFT_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

void base64_encode(const uint8_t *in, size_t n, buf *out);

#endif
