/* unbroken_faults: syscall-level fault injection loaded with LD_PRELOAD.
 *
 * Rules come from UNBROKEN_FAULTS (one rule per line or ';'), replaced at run
 * time by the contents of the control file UNBROKEN_FAULTS_FILE whenever its
 * mtime changes. Every injected fault is one JSON line appended to
 * UNBROKEN_FAULTS_LOG. See docs/native-faults.md for the rule format.
 */
#ifndef UNBROKEN_FAULTS_H
#define UNBROKEN_FAULTS_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#define UF_MAX_RULES 64
#define UF_MAX_ID 48
#define UF_MAX_GLOB 256

enum uf_action {
    UF_NONE = 0,
    /* network, matched by destination */
    UF_REFUSE,     /* connect fails with ECONNREFUSED */
    UF_BLACKHOLE,  /* connect never completes (stage=connect) or sends vanish (stage=data) */
    UF_RESET,      /* ECONNRESET once after= bytes have been received */
    UF_LATENCY,    /* ms= (+ uniform jitter= ms) before connect and each read */
    UF_SLICE,      /* reads return at most bytes= bytes */
    UF_DROP,       /* each send vanishes with probability p= (reported as sent) */
    /* files, matched by path glob */
    UF_ENOSPC,     /* writes fail with ENOSPC */
    UF_EIO,        /* writes fail with EIO */
    UF_SHORT,      /* writes write at most bytes= bytes */
    UF_FSYNC       /* fsync/fdatasync fail with EIO */
};

/* One destination: family 0 matches any; port 0 matches any port. */
struct uf_dest {
    int family;             /* AF_INET, AF_INET6 or 0 (any address) */
    uint8_t addr[16];
    uint16_t port;          /* host order; 0 = any */
    char text[64];          /* as written, for the log and the selection hash */
};

struct uf_rule {
    char id[UF_MAX_ID];
    enum uf_action action;
    int stage_data;         /* blackhole: 1 = connect succeeds, every send vanishes */
    struct uf_dest *dests;  /* NULL/0 = every destination */
    uint8_t *selected;      /* fraction=: 1 for the members in force */
    size_t ndests;
    double fraction;        /* <0: all members */
    uint64_t seed;
    char glob[UF_MAX_GLOB];
    long after;             /* reset: bytes received before the reset */
    long bytes;             /* slice / short */
    long ms, jitter_ms;     /* latency */
    double p;               /* drop probability (also: any rule with p<1 fires with p) */
    long nth;               /* file rules: only the nth matching call (1-based); 0 = every */
    long calls;             /* matching calls so far */
    uint64_t rng;           /* splitmix64 state */
};

struct uf_rules {
    struct uf_rule rule[UF_MAX_RULES];
    int n;
};

/* rules.c */
int uf_parse_rules(const char *text, struct uf_rules *out, char *err, size_t errlen);
void uf_free_rules(struct uf_rules *r);
uint64_t uf_fnv1a(const char *s, uint64_t h);
uint64_t uf_next(uint64_t *state);
double uf_uniform(uint64_t *state);
int uf_dest_match(const struct uf_rule *r, int family, const uint8_t *addr, uint16_t port);
const char *uf_action_name(enum uf_action a);
int uf_is_file_action(enum uf_action a);

#endif
