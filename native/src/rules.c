/* Parsing the rule text, destination matching, the seeded PRNG and the
 * deterministic selection of a fraction of a destination set. No libc state:
 * everything lives in the struct uf_rules the caller owns. */
#define _GNU_SOURCE
#include "unbroken_faults.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

uint64_t uf_fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

uint64_t uf_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

double uf_uniform(uint64_t *state)
{
    return (double)(uf_next(state) >> 11) / 9007199254740992.0; /* [0, 1) */
}

static const struct { const char *name; enum uf_action action; } ACTIONS[] = {
    {"refuse", UF_REFUSE}, {"blackhole", UF_BLACKHOLE}, {"reset", UF_RESET},
    {"latency", UF_LATENCY}, {"slice", UF_SLICE}, {"drop", UF_DROP},
    {"enospc", UF_ENOSPC}, {"eio", UF_EIO}, {"short", UF_SHORT}, {"fsync", UF_FSYNC},
};

const char *uf_action_name(enum uf_action a)
{
    for (size_t i = 0; i < sizeof ACTIONS / sizeof ACTIONS[0]; i++)
        if (ACTIONS[i].action == a)
            return ACTIONS[i].name;
    return "none";
}

int uf_is_file_action(enum uf_action a)
{
    return a == UF_ENOSPC || a == UF_EIO || a == UF_SHORT || a == UF_FSYNC;
}

static int parse_dest(const char *text, struct uf_dest *d)
{
    char host[64];
    const char *port = NULL;
    memset(d, 0, sizeof *d);
    snprintf(d->text, sizeof d->text, "%s", text);
    if (strcmp(text, "*") == 0)
        return 0;
    if (text[0] == '[') { /* [v6]:port or [v6] */
        const char *end = strchr(text, ']');
        if (!end || (size_t)(end - text - 1) >= sizeof host)
            return -1;
        memcpy(host, text + 1, end - text - 1);
        host[end - text - 1] = 0;
        if (end[1] == ':')
            port = end + 2;
        else if (end[1])
            return -1;
    } else {
        const char *colon = strchr(text, ':');
        if (colon && strchr(colon + 1, ':')) { /* bare IPv6, no port */
            snprintf(host, sizeof host, "%s", text);
        } else {
            size_t n = colon ? (size_t)(colon - text) : strlen(text);
            if (n >= sizeof host)
                return -1;
            memcpy(host, text, n);
            host[n] = 0;
            port = colon ? colon + 1 : NULL;
        }
    }
    if (port) {
        char *end;
        long p = strtol(port, &end, 10);
        if (*port == 0 || *end || p <= 0 || p > 65535)
            return -1;
        d->port = (uint16_t)p;
    }
    if (host[0] == 0 || strcmp(host, "*") == 0)
        return 0;
    if (inet_pton(AF_INET, host, d->addr) == 1) {
        d->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, host, d->addr) == 1) {
        d->family = AF_INET6;
        return 0;
    }
    return -1;
}

int uf_dest_match(const struct uf_rule *r, int family, const uint8_t *addr, uint16_t port)
{
    if (r->ndests == 0)
        return 1;
    for (size_t i = 0; i < r->ndests; i++) {
        const struct uf_dest *d = &r->dests[i];
        if (r->selected && !r->selected[i])
            continue;
        if (d->port && d->port != port)
            continue;
        if (d->family) {
            if (d->family != family)
                continue;
            if (memcmp(d->addr, addr, family == AF_INET ? 4 : 16) != 0)
                continue;
        }
        return 1;
    }
    return 0;
}

/* fraction=F of the set: the round(F*n) members with the smallest FNV-1a of "<seed>/<member>". */
static int select_members(struct uf_rule *r)
{
    size_t n = r->ndests, k = (size_t)floor(r->fraction * (double)n + 0.5);
    uint64_t *h = calloc(n ? n : 1, sizeof *h);
    char prefix[32];
    r->selected = calloc(n ? n : 1, 1);
    if (!h || !r->selected) {
        free(h);
        return -1;
    }
    snprintf(prefix, sizeof prefix, "%llu/", (unsigned long long)r->seed);
    for (size_t i = 0; i < n; i++)
        h[i] = uf_fnv1a(r->dests[i].text, uf_fnv1a(prefix, 14695981039346656037ULL));
    for (size_t chosen = 0; chosen < k; chosen++) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (!r->selected[i] && (best == n || h[i] < h[best]))
                best = i;
        r->selected[best] = 1;
    }
    free(h);
    return 0;
}

static int parse_dests(struct uf_rule *r, const char *value, char *err, size_t errlen)
{
    char *buf = strdup(value), *save = NULL;
    size_t n = 1;
    int rc = 0;
    for (const char *c = value; *c; c++)
        n += *c == ',';
    free(r->dests);
    r->ndests = 0;
    r->dests = calloc(n, sizeof *r->dests);
    if (!r->dests || !buf) {
        free(buf);
        return snprintf(err, errlen, "out of memory"), -1;
    }
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (parse_dest(tok, &r->dests[r->ndests]) != 0) {
            snprintf(err, errlen, "bad destination '%.60s' (want ADDR, ADDR:PORT, :PORT, [V6]:PORT or *)", tok);
            rc = -1;
            break;
        }
        r->ndests++;
    }
    free(buf);
    return rc;
}

static int num(const char *key, const char *value, double lo, double hi, double *out, char *err, size_t errlen)
{
    char *end;
    double v = strtod(value, &end);
    if (*value == 0 || *end || !(v >= lo && v <= hi)) {
        snprintf(err, errlen, "%s=%s: want a number in [%g, %g]", key, value, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int set_key(struct uf_rule *r, const char *key, const char *value, char *err, size_t errlen)
{
    double v = 0;
    if (strcmp(key, "id") == 0) {
        if (strlen(value) >= UF_MAX_ID || strpbrk(value, "\"\\"))
            return snprintf(err, errlen, "id too long or holds a quote"), -1;
        snprintf(r->id, sizeof r->id, "%s", value);
    } else if (strcmp(key, "action") == 0) {
        for (size_t i = 0; i < sizeof ACTIONS / sizeof ACTIONS[0]; i++)
            if (strcmp(value, ACTIONS[i].name) == 0)
                r->action = ACTIONS[i].action;
        if (r->action == UF_NONE)
            return snprintf(err, errlen, "unknown action '%s'", value), -1;
    } else if (strcmp(key, "dst") == 0) {
        return parse_dests(r, value, err, errlen);
    } else if (strcmp(key, "path") == 0) {
        if (strlen(value) >= UF_MAX_GLOB || strpbrk(value, "\"\\"))
            return snprintf(err, errlen, "path glob too long or holds a quote"), -1;
        snprintf(r->glob, sizeof r->glob, "%s", value);
    } else if (strcmp(key, "stage") == 0) {
        if (strcmp(value, "connect") && strcmp(value, "data"))
            return snprintf(err, errlen, "stage=%s: want connect or data", value), -1;
        r->stage_data = strcmp(value, "data") == 0;
    } else if (strcmp(key, "fraction") == 0) {
        if (num(key, value, 0, 1, &r->fraction, err, errlen))
            return -1;
    } else if (strcmp(key, "p") == 0) {
        if (num(key, value, 0, 1, &r->p, err, errlen))
            return -1;
    } else if (strcmp(key, "seed") == 0) {
        if (num(key, value, 0, 1e18, &v, err, errlen))
            return -1;
        r->seed = (uint64_t)v;
    } else {
        long *field = strcmp(key, "after") == 0 ? &r->after
                    : strcmp(key, "bytes") == 0 ? &r->bytes
                    : strcmp(key, "ms") == 0 ? &r->ms
                    : strcmp(key, "jitter") == 0 ? &r->jitter_ms
                    : strcmp(key, "nth") == 0 ? &r->nth : NULL;
        if (!field)
            return snprintf(err, errlen, "unknown key '%s'", key), -1;
        if (num(key, value, 0, 1e12, &v, err, errlen))
            return -1;
        *field = (long)v;
    }
    return 0;
}

static int check_rule(struct uf_rule *r, char *err, size_t errlen)
{
    if (r->action == UF_NONE)
        return snprintf(err, errlen, "no action"), -1;
    if (uf_is_file_action(r->action) && r->glob[0] == 0)
        return snprintf(err, errlen, "%s needs path=GLOB", uf_action_name(r->action)), -1;
    if (!uf_is_file_action(r->action) && r->glob[0])
        return snprintf(err, errlen, "%s is a network rule: use dst=, not path=", uf_action_name(r->action)), -1;
    if ((r->action == UF_SLICE || r->action == UF_SHORT) && r->bytes <= 0)
        return snprintf(err, errlen, "%s needs bytes=N > 0", uf_action_name(r->action)), -1;
    if (r->fraction >= 0 && r->ndests == 0)
        return snprintf(err, errlen, "fraction= needs a dst= set"), -1;
    if (r->fraction >= 0 && select_members(r))
        return snprintf(err, errlen, "out of memory"), -1;
    r->rng = r->seed * 0x9E3779B97F4A7C15ULL + uf_fnv1a(r->id, 14695981039346656037ULL);
    return 0;
}

/* One rule per line (or ';'): "ACTION key=value ..."; '#' starts a comment line. */
int uf_parse_rules(const char *text, struct uf_rules *out, char *err, size_t errlen)
{
    char *copy = strdup(text ? text : ""), *save_line = NULL;
    int line = 0;
    memset(out, 0, sizeof *out);
    if (!copy)
        return snprintf(err, errlen, "out of memory"), -1;
    for (char *c = copy; *c; c++)
        if (*c == ';')
            *c = '\n';
    for (char *ln = strtok_r(copy, "\n", &save_line); ln; ln = strtok_r(NULL, "\n", &save_line)) {
        char *save = NULL, *tok, head[UF_MAX_ID + 16];
        struct uf_rule *r;
        line++;
        while (*ln == ' ' || *ln == '\t' || *ln == '\r')
            ln++;
        if (*ln == 0 || *ln == '#')
            continue;
        if (out->n == UF_MAX_RULES) {
            snprintf(err, errlen, "more than %d rules", UF_MAX_RULES);
            goto fail;
        }
        r = &out->rule[out->n++];
        r->fraction = -1;
        r->p = 1.0;
        snprintf(r->id, sizeof r->id, "r%d", out->n);
        for (tok = strtok_r(ln, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
            char *eq = strchr(tok, '=');
            char e[200] = "";
            int bad;
            if (eq) {
                *eq = 0;
                bad = set_key(r, tok, eq + 1, e, sizeof e);
            } else {
                bad = set_key(r, "action", tok, e, sizeof e);
            }
            if (bad) {
                snprintf(err, errlen, "rule %d: %s", line, e);
                goto fail;
            }
        }
        {
            char e[200] = "";
            if (check_rule(r, e, sizeof e)) {
                snprintf(head, sizeof head, "%s", r->id);
                snprintf(err, errlen, "rule %d (%s): %s", line, head, e);
                goto fail;
            }
        }
    }
    free(copy);
    return 0;
fail:
    free(copy);
    uf_free_rules(out);
    return -1;
}

void uf_free_rules(struct uf_rules *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->rule[i].dests);
        free(r->rule[i].selected);
    }
    memset(r, 0, sizeof *r);
}
