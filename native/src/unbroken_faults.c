/* unbroken_faults: the LD_PRELOAD interposers.
 *
 * Every interposed call resolves the real one with dlsym(RTLD_NEXT) and passes
 * straight through when no rule matches. State: the rules in force (swapped
 * whole on reload), and a table by fd of the destinations connected to and
 * the file paths written to. A mutex guards both; a thread-local flag makes a
 * call that arrives while this thread is already inside the library (a signal
 * handler, the library's own I/O) pass through, so nothing deadlocks.
 */
#define _GNU_SOURCE
#include "unbroken_faults.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define UF_EXPORT __attribute__((visibility("default")))
#define UF_MAX_FDS 8192

struct uf_fd {
    uint8_t tracked;     /* an inet socket we saw connect */
    uint8_t tripped;     /* reset: every later call fails with ECONNRESET */
    uint8_t path_state;  /* 0 unknown, 1 path cached, 2 not a regular file / unreadable */
    int family;
    uint8_t addr[16];
    uint16_t port;
    uint64_t rx;
    int bh_peer;         /* write end of the pipe a black-holed connect waits on; -1 none */
    char *path;
    dev_t dev;           /* of the cached path's file: checked before a file fault fires */
    ino_t ino;
    uint64_t gen;        /* the rules generation net_mask and file_mask were computed for */
    uint64_t net_mask;   /* bit i: network rule i matches this destination */
    uint64_t file_mask;  /* bit i: file rule i's glob matches this path */
};

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);

static struct {
    int (*connect)(int, const struct sockaddr *, socklen_t);
    ssize_t (*read)(int, void *, size_t);
    ssize_t (*read_chk)(int, void *, size_t, size_t);
    ssize_t (*recv)(int, void *, size_t, int);
    ssize_t (*recv_chk)(int, void *, size_t, size_t, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*send)(int, const void *, size_t, int);
    ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    ssize_t (*sendmsg)(int, const struct msghdr *, int);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*pwrite)(int, const void *, size_t, off_t);
    ssize_t (*pwrite64)(int, const void *, size_t, off64_t);
    ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
    ssize_t (*pwritev64)(int, const struct iovec *, int, off64_t);
    int (*fsync)(int);
    int (*fdatasync)(int);
    int (*close)(int);
    int (*open)(const char *, int, ...);
    int (*open64)(const char *, int, ...);
    int (*openat)(int, const char *, int, ...);
    int (*openat64)(int, const char *, int, ...);
    int (*creat)(const char *, mode_t);
    int (*socket)(int, int, int);
    int (*accept)(int, struct sockaddr *, socklen_t *);
    int (*accept4)(int, struct sockaddr *, socklen_t *, int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
} real;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int t_inside __attribute__((tls_model("initial-exec")));
static struct uf_rules g_rules;
static volatile int g_nnet, g_nfile;  /* rules of each kind in force (read without the lock) */
static uint64_t g_gen = 1;           /* bumped whenever the rules change */
static struct uf_fd g_fds[UF_MAX_FDS];
static char g_control[1024];
static struct timespec g_control_mtime;
static ino_t g_control_ino;
static off_t g_control_size = -1;
static volatile int64_t g_next_check_ns;
static int64_t g_poll_ns = 10 * 1000000LL;
static char g_logpath[1024];
static int g_logfd = -1;
static volatile int g_ready;

#define RESOLVE(name, sym) \
    do { if (!real.name) real.name = dlsym(RTLD_NEXT, sym); } while (0)

static void resolve_all(void)
{
    RESOLVE(connect, "connect"); RESOLVE(read, "read"); RESOLVE(read_chk, "__read_chk");
    RESOLVE(recv, "recv"); RESOLVE(recv_chk, "__recv_chk"); RESOLVE(recvfrom, "recvfrom");
    RESOLVE(recvmsg, "recvmsg"); RESOLVE(write, "write"); RESOLVE(send, "send");
    RESOLVE(sendto, "sendto"); RESOLVE(sendmsg, "sendmsg"); RESOLVE(writev, "writev");
    RESOLVE(pwrite, "pwrite"); RESOLVE(pwrite64, "pwrite64"); RESOLVE(pwritev, "pwritev");
    RESOLVE(pwritev64, "pwritev64"); RESOLVE(fsync, "fsync"); RESOLVE(fdatasync, "fdatasync");
    RESOLVE(close, "close"); RESOLVE(open, "open"); RESOLVE(open64, "open64");
    RESOLVE(openat, "openat"); RESOLVE(openat64, "openat64"); RESOLVE(creat, "creat");
    RESOLVE(socket, "socket"); RESOLVE(accept, "accept"); RESOLVE(accept4, "accept4");
    RESOLVE(dup2, "dup2"); RESOLVE(dup3, "dup3");
}

static int64_t now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* ---- the log ------------------------------------------------------------------ */

static size_t json_str(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = 0;
    return n;
}

static const char *errno_name(int e)
{
    switch (e) {
    case 0: return "";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EINPROGRESS: return "EINPROGRESS";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ENOSPC: return "ENOSPC";
    case EIO: return "EIO";
    case EPIPE: return "EPIPE";
    default: return "E?";
    }
}

/* One JSON line, one write(2) on an O_APPEND fd: lines from many processes never interleave. */
static void log_line(const char *event, const char *syscall_name, const char *rule, const char *action,
                     const char *target, int err, const char *fmt, ...)
{
    char line[2048], tgt[600], det[600], raw[512] = "";
    va_list ap;
    int n;
    if (g_logpath[0] == 0)
        return;
    if (g_logfd < 0)
        g_logfd = open(g_logpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (g_logfd < 0)
        return;
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
    }
    json_str(tgt, sizeof tgt, target ? target : "");
    json_str(det, sizeof det, raw);
    n = snprintf(line, sizeof line,
                 "{\"event\":\"%s\",\"t_ns\":%lld,\"pid\":%d,\"tid\":%ld,\"syscall\":\"%s\","
                 "\"rule\":\"%s\",\"action\":\"%s\",\"target\":\"%s\",\"errno\":%d,"
                 "\"errno_name\":\"%s\",\"detail\":\"%s\"}\n",
                 event, (long long)now_ns(CLOCK_REALTIME), (int)getpid(), (long)syscall(SYS_gettid),
                 syscall_name, rule ? rule : "", action ? action : "", tgt, err, errno_name(err), det);
    if (n > 0 && (size_t)n < sizeof line)
        real.write(g_logfd, line, (size_t)n);
}

static void dest_text(const struct uf_fd *f, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    inet_ntop(f->family, f->addr, host, sizeof host);
    if (f->family == AF_INET6)
        snprintf(out, cap, "[%s]:%u", host, f->port);
    else
        snprintf(out, cap, "%s:%u", host, f->port);
}

/* ---- rules ---------------------------------------------------------------------- */

static void install(struct uf_rules *fresh, const char *source)
{
    int nnet = 0, nfile = 0;
    for (int i = 0; i < fresh->n; i++) {
        if (uf_is_file_action(fresh->rule[i].action))
            nfile++;
        else
            nnet++;
    }
    pthread_mutex_lock(&g_lock);
    uf_free_rules(&g_rules);
    g_rules = *fresh;
    __atomic_add_fetch(&g_gen, 1, __ATOMIC_RELEASE);
    g_nnet = nnet;
    g_nfile = nfile;
    log_line("rules", "", "", "", source, 0, "%d rules in force", g_rules.n);
    for (int i = 0; i < g_rules.n; i++) {
        struct uf_rule *r = &g_rules.rule[i];
        char list[1024] = "";
        size_t used = 0;
        if (!r->selected)
            continue;
        for (size_t k = 0; k < r->ndests; k++)
            if (r->selected[k] && used + 70 < sizeof list)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? "," : "",
                                         r->dests[k].text);
        log_line("select", "", r->id, uf_action_name(r->action), list, 0,
                 "fraction %g of %zu, seed %llu", r->fraction, r->ndests, (unsigned long long)r->seed);
    }
    pthread_mutex_unlock(&g_lock);
}

static void load_text(const char *text, const char *source)
{
    struct uf_rules fresh;
    char err[300];
    if (uf_parse_rules(text, &fresh, err, sizeof err) != 0) {
        char msg[400];
        int n = snprintf(msg, sizeof msg, "unbroken-faults: %s: %s (rules unchanged)\n", source, err);
        if (n > 0)
            real.write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
        log_line("error", "", "", "", source, 0, "%s", err);
        return;
    }
    install(&fresh, source);
}

/* Re-read the control file when its mtime, size or inode changed (checked every poll ms). */
static void maybe_reload(void)
{
    struct stat st;
    int64_t now;
    if (g_control[0] == 0)
        return;
    now = now_ns(CLOCK_MONOTONIC_COARSE);
    if (now < g_next_check_ns)
        return;
    g_next_check_ns = now + g_poll_ns;
    if (stat(g_control, &st) != 0)
        return;
    if (st.st_mtim.tv_sec == g_control_mtime.tv_sec && st.st_mtim.tv_nsec == g_control_mtime.tv_nsec
        && st.st_ino == g_control_ino && st.st_size == g_control_size)
        return;
    {
        char *buf = malloc((size_t)st.st_size + 1);
        int fd = open(g_control, O_RDONLY | O_CLOEXEC);
        ssize_t got = 0, n;
        if (!buf || fd < 0) {
            free(buf);
            if (fd >= 0)
                real.close(fd);
            return;
        }
        while (got < st.st_size && (n = real.read(fd, buf + got, (size_t)(st.st_size - got))) > 0)
            got += n;
        real.close(fd);
        buf[got] = 0;
        g_control_mtime = st.st_mtim;
        g_control_ino = st.st_ino;
        g_control_size = st.st_size;
        load_text(buf, g_control);
        free(buf);
    }
}

__attribute__((constructor)) static void uf_init(void)
{
    const char *s;
    t_inside = 1;
    resolve_all();
    for (int i = 0; i < UF_MAX_FDS; i++)
        g_fds[i].bh_peer = -1;
    if ((s = getenv("UNBROKEN_FAULTS_LOG")))
        snprintf(g_logpath, sizeof g_logpath, "%s", s);
    if ((s = getenv("UNBROKEN_FAULTS_POLL_MS")))
        g_poll_ns = atol(s) * 1000000LL;
    if ((s = getenv("UNBROKEN_FAULTS")) && *s)
        load_text(s, "UNBROKEN_FAULTS");
    if ((s = getenv("UNBROKEN_FAULTS_FILE")) && *s) {
        snprintf(g_control, sizeof g_control, "%s", s);
        maybe_reload();
    }
    g_ready = 1;
    t_inside = 0;
}

static void after_fork_child(void)
{
    pthread_mutex_init(&g_lock, NULL);
}

__attribute__((constructor)) static void uf_init_fork(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* Does the rule fire on this call? Counts calls for nth= and draws for p<1. Lock held. */
static int fires(struct uf_rule *r)
{
    r->calls++;
    if (r->nth && r->calls != r->nth)
        return 0;
    if (r->p < 1.0 && uf_uniform(&r->rng) >= r->p)
        return 0;
    return 1;
}

static struct uf_fd *net_fd(int fd)
{
    if (fd < 0 || fd >= UF_MAX_FDS || !g_fds[fd].tracked)
        return NULL;
    return &g_fds[fd];
}

/* Bit i set when network rule i matches the fd's destination (cached per rules generation). */
static uint64_t net_mask(struct uf_fd *f)
{
    if (f->gen != g_gen) {
        f->net_mask = f->file_mask = 0;
        for (int i = 0; i < g_rules.n; i++)
            if (!uf_is_file_action(g_rules.rule[i].action)
                && uf_dest_match(&g_rules.rule[i], f->family, f->addr, f->port))
                f->net_mask |= 1ULL << i;
        f->gen = g_gen;
    }
    return f->net_mask;
}

/* Lock-free fast path: the fd's masks are current and no rule concerns it. A rules swap racing
 * with this read at worst lets one call through under the old rules. */
static int unconcerned(const struct uf_fd *f)
{
    return f->gen == __atomic_load_n(&g_gen, __ATOMIC_ACQUIRE) && !f->tripped
           && (f->tracked ? f->net_mask == 0 : (f->path_state == 2 || (f->path_state == 1 && f->file_mask == 0)));
}

static int enter(void)
{
    if (t_inside || !g_ready)
        return 0;
    t_inside = 1;
    maybe_reload();
    return 1;
}

#define LEAVE() (t_inside = 0)

/* ---- connect ------------------------------------------------------------------------ */

static int record_dest(int fd, const struct sockaddr *sa, socklen_t len)
{
    struct uf_fd *f;
    if (fd < 0 || fd >= UF_MAX_FDS || !sa)
        return 0;
    f = &g_fds[fd];
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const void *)sa;
        f->family = AF_INET;
        memcpy(f->addr, &in->sin_addr, 4);
        f->port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            f->family = AF_INET;
            memcpy(f->addr, (const uint8_t *)&in6->sin6_addr + 12, 4);
        } else {
            f->family = AF_INET6;
            memcpy(f->addr, &in6->sin6_addr, 16);
        }
        f->port = ntohs(in6->sin6_port);
    } else {
        return 0;
    }
    f->tracked = 1;
    f->tripped = 0;
    f->rx = 0;
    f->gen = 0;
    return 1;
}

static int64_t delay_of(struct uf_rule *r)
{
    int64_t ms = r->ms * 1000000LL;
    if (r->jitter_ms > 0)
        ms += (int64_t)(uf_uniform(&r->rng) * (double)(r->jitter_ms * 1000000LL));
    return ms;
}

/* A connect that never completes: the fd becomes the read end of a pipe nobody writes to. */
static int blackhole_connect(int fd, struct uf_fd *f)
{
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD), p[2];
    if (!(fl & O_NONBLOCK)) {
        struct timeval tv = {0, 0};
        socklen_t len = sizeof tv;
        getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &len);
        if (tv.tv_sec == 0 && tv.tv_usec == 0) {
            for (;;)
                sleep_ns(3600LL * 1000000000LL);
        }
        sleep_ns((int64_t)tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL);
        errno = EINPROGRESS;
        return -1;
    }
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        return -2;
    if (dup3(p[0], fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
        real.close(p[0]);
        real.close(p[1]);
        return -2;
    }
    real.close(p[0]);
    f->bh_peer = p[1];
    errno = EINPROGRESS;
    return -1;
}

UF_EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    struct uf_fd *f;
    char target[80];
    int64_t delay = 0;
    int action = UF_NONE, rc;
    char rid[UF_MAX_ID] = "";
    RESOLVE(connect, "connect");
    if (!enter())
        return real.connect(fd, sa, len);
    if (!record_dest(fd, sa, len) || g_nnet == 0) {
        LEAVE();
        return real.connect(fd, sa, len);
    }
    f = &g_fds[fd];
    dest_text(f, target, sizeof target);
    pthread_mutex_lock(&g_lock);
    uint64_t mask = net_mask(f);
    for (int i = 0; mask && i < g_rules.n; i++) {
        struct uf_rule *r = &g_rules.rule[i];
        if (!(mask & (1ULL << i)))
            continue;
        if (r->action == UF_LATENCY && fires(r)) {
            delay += delay_of(r);
            log_line("fault", "connect", r->id, "latency", target, 0, "delayed %lld ms",
                     (long long)(delay / 1000000));
        } else if ((r->action == UF_REFUSE || (r->action == UF_BLACKHOLE && !r->stage_data))
                   && action == UF_NONE && fires(r)) {
            action = r->action;
            snprintf(rid, sizeof rid, "%s", r->id);
        }
    }
    pthread_mutex_unlock(&g_lock);
    if (delay)
        sleep_ns(delay);
    if (action == UF_REFUSE) {
        log_line("fault", "connect", rid, "refuse", target, ECONNREFUSED, "connect refused");
        LEAVE();
        errno = ECONNREFUSED;
        return -1;
    }
    if (action == UF_BLACKHOLE) {
        log_line("fault", "connect", rid, "blackhole", target, 0, "connect never completes");
        rc = blackhole_connect(fd, f);
        if (rc != -2) {
            int e = errno;
            LEAVE();
            errno = e;
            return rc;
        }
    }
    LEAVE();
    return real.connect(fd, sa, len);
}

/* ---- receiving -------------------------------------------------------------------- */

/* Before a read of n bytes on a tracked socket: sleep for latency, shrink n for slice and
 * reset. Returns the byte limit, or -1 with errno set when the call fails now. */
static ssize_t before_read(int fd, struct uf_fd *f, size_t n, const char *sc, size_t *limit)
{
    char target[80] = "";
    int64_t delay = 0;
    size_t lim = n;
    uint64_t mask;
    if (f->tripped) {
        errno = ECONNRESET;
        return -1;
    }
    pthread_mutex_lock(&g_lock);
    mask = net_mask(f);
    if (mask)
        dest_text(f, target, sizeof target);
    for (int i = 0; mask && i < g_rules.n; i++) {
        struct uf_rule *r = &g_rules.rule[i];
        if (!(mask & (1ULL << i)))
            continue;
        if (r->action == UF_LATENCY && fires(r)) {
            int64_t d = delay_of(r);
            delay += d;
            log_line("fault", sc, r->id, "latency", target, 0, "delayed %lld ms", (long long)(d / 1000000));
        } else if (r->action == UF_SLICE && n != (size_t)-1 && (size_t)r->bytes < lim) {
            lim = (size_t)r->bytes;
            log_line("fault", sc, r->id, "slice", target, 0, "read of %zu limited to %ld bytes", n, r->bytes);
        } else if (r->action == UF_RESET) {
            if (f->rx >= (uint64_t)r->after) {
                f->tripped = 1;
                shutdown(fd, SHUT_RDWR);
                log_line("fault", sc, r->id, "reset", target, ECONNRESET,
                         "connection reset after %llu bytes", (unsigned long long)f->rx);
                pthread_mutex_unlock(&g_lock);
                errno = ECONNRESET;
                return -1;
            }
            if ((uint64_t)r->after - f->rx < lim)
                lim = (size_t)((uint64_t)r->after - f->rx);
        }
    }
    pthread_mutex_unlock(&g_lock);
    if (delay)
        sleep_ns(delay);
    *limit = lim;
    return 0;
}

static void after_read(struct uf_fd *f, ssize_t got)
{
    if (got > 0)
        f->rx += (uint64_t)got;
}

#define NET_READ(call, sc, n)                                          \
    do {                                                               \
        struct uf_fd *f;                                               \
        size_t lim;                                                    \
        ssize_t got;                                                   \
        if (!enter())                                                  \
            return call(n);                                            \
        f = g_nnet ? net_fd(fd) : NULL;                                \
        if (!f || unconcerned(f)) {                                    \
            LEAVE();                                                   \
            return call(n);                                            \
        }                                                              \
        if (before_read(fd, f, n, sc, &lim) != 0) {                    \
            LEAVE();                                                   \
            return -1;                                                 \
        }                                                              \
        LEAVE();                                                       \
        got = call(lim);                                               \
        if (got > 0)                                                   \
            after_read(f, got);                                        \
        return got;                                                    \
    } while (0)

UF_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    RESOLVE(read, "read");
#define CALL(m) real.read(fd, buf, m)
    NET_READ(CALL, "read", n);
#undef CALL
}

UF_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    RESOLVE(read_chk, "__read_chk");
#define CALL(m) real.read_chk(fd, buf, m, buflen)
    NET_READ(CALL, "read", n);
#undef CALL
}

UF_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    RESOLVE(recv, "recv");
#define CALL(m) real.recv(fd, buf, m, flags)
    NET_READ(CALL, "recv", n);
#undef CALL
}

UF_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    RESOLVE(recv_chk, "__recv_chk");
#define CALL(m) real.recv_chk(fd, buf, m, buflen, flags)
    NET_READ(CALL, "recv", n);
#undef CALL
}

UF_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa, socklen_t *len)
{
    RESOLVE(recvfrom, "recvfrom");
#define CALL(m) real.recvfrom(fd, buf, m, flags, sa, len)
    NET_READ(CALL, "recvfrom", n);
#undef CALL
}

UF_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct uf_fd *f;
    size_t lim;
    ssize_t got;
    RESOLVE(recvmsg, "recvmsg");
    if (!enter())
        return real.recvmsg(fd, msg, flags);
    f = g_nnet ? net_fd(fd) : NULL;
    if (f && before_read(fd, f, (size_t)-1, "recvmsg", &lim) != 0) { /* slice does not apply */
        LEAVE();
        return -1;
    }
    LEAVE();
    got = real.recvmsg(fd, msg, flags);
    if (f && got > 0)
        after_read(f, got);
    return got;
}

/* ---- sending ---------------------------------------------------------------------------- */

/* 1: the send vanishes (report it sent); -1: fail with errno; 0: pass through. Lock not held. */
static int before_send(struct uf_fd *f, const char *sc, size_t n)
{
    char target[80], rid[UF_MAX_ID] = "";
    int action = UF_NONE;
    if (f->tripped) {
        errno = ECONNRESET;
        return -1;
    }
    pthread_mutex_lock(&g_lock);
    uint64_t mask = net_mask(f);
    for (int i = 0; mask && i < g_rules.n && action == UF_NONE; i++) {
        struct uf_rule *r = &g_rules.rule[i];
        if ((mask & (1ULL << i)) && (r->action == UF_DROP || (r->action == UF_BLACKHOLE && r->stage_data))
            && fires(r)) {
            action = r->action;
            snprintf(rid, sizeof rid, "%s", r->id);
        }
    }
    pthread_mutex_unlock(&g_lock);
    if (action == UF_NONE)
        return 0;
    dest_text(f, target, sizeof target);
    log_line("fault", sc, rid, uf_action_name((enum uf_action)action), target, 0,
             "%zu bytes vanished", n);
    return 1;
}

/* ---- files ----------------------------------------------------------------------------- */

static void forget_path(struct uf_fd *f)
{
    free(f->path);
    f->path = NULL;
    f->path_state = 0;
    f->gen = 0;
}

static const char *fd_path(int fd, struct uf_fd *f)
{
    if (f->path_state == 0) {
        char link[64], buf[4096];
        ssize_t n;
        struct stat st;
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        n = readlink(link, buf, sizeof buf - 1);
        f->path_state = 2;
        f->gen = 0;
        if (n > 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            buf[n] = 0;
            f->path = strdup(buf);
            f->dev = st.st_dev;
            f->ino = st.st_ino;
            if (f->path)
                f->path_state = 1;
        }
    }
    return f->path_state == 1 ? f->path : NULL;
}

/* Bit i set when file rule i's glob matches the fd's path (cached per rules generation). */
static uint64_t file_mask(int fd, struct uf_fd *f)
{
    const char *path = fd_path(fd, f);
    if (!path) {
        f->gen = g_gen;  /* not a regular file: nothing to match until the rules change */
        return 0;
    }
    if (f->gen != g_gen) {
        f->file_mask = f->net_mask = 0;
        for (int i = 0; i < g_rules.n; i++)
            if (uf_is_file_action(g_rules.rule[i].action) && fnmatch(g_rules.rule[i].glob, path, 0) == 0)
                f->file_mask |= 1ULL << i;
        f->gen = g_gen;
    }
    return f->file_mask;
}

/* For a write (fsync=0) or fsync (fsync=1) on fd: the rule that fires, copied out. Lock held.
 * The cached path is checked against the file (fstat) only when some rule matches it, so a
 * write that no rule concerns costs no extra system call. */
static int file_rule(int fd, int fsync_call, struct uf_rule *out, char *where, size_t cap)
{
    struct uf_fd *f;
    uint64_t mask;
    struct stat st;
    if (fd < 0 || fd >= UF_MAX_FDS)
        return 0;
    f = &g_fds[fd];
    if (f->tracked || !(mask = file_mask(fd, f)))
        return 0;
    if (fstat(fd, &st) != 0 || st.st_dev != f->dev || st.st_ino != f->ino) {
        forget_path(f);  /* the fd was closed behind our back and reused */
        if (!(mask = file_mask(fd, f)))
            return 0;
    }
    for (int i = 0; i < g_rules.n; i++) {
        struct uf_rule *r = &g_rules.rule[i];
        if (!(mask & (1ULL << i)) || (r->action == UF_FSYNC) != fsync_call)
            continue;
        if (fires(r)) {
            *out = *r;
            snprintf(where, cap, "%s", f->path);
            return 1;
        }
    }
    return 0;
}

/* Before a file write of n bytes: 0 pass, -1 fail (errno set), or 1 with *lim for short writes. */
static int before_file_write(int fd, const char *sc, size_t n, size_t *lim)
{
    struct uf_rule r;
    char path[512];
    int hit;
    pthread_mutex_lock(&g_lock);
    hit = file_rule(fd, 0, &r, path, sizeof path);
    pthread_mutex_unlock(&g_lock);
    if (!hit)
        return 0;
    if (r.action == UF_SHORT) {
        if ((size_t)r.bytes >= n)
            return 0;
        *lim = (size_t)r.bytes;
        log_line("fault", sc, r.id, "short", path, 0, "write of %zu cut to %ld bytes", n, r.bytes);
        return 1;
    }
    log_line("fault", sc, r.id, uf_action_name(r.action), path,
             r.action == UF_ENOSPC ? ENOSPC : EIO, "write of %zu bytes failed", n);
    errno = r.action == UF_ENOSPC ? ENOSPC : EIO;
    return -1;
}

/* One macro for every write-like call: sockets go through before_send, files before_file_write. */
#define ANY_WRITE(call, sc, n, can_short)                                   \
    do {                                                                    \
        struct uf_fd *f;                                                    \
        size_t lim = (n);                                                   \
        int v;                                                              \
        if (!enter())                                                       \
            return call(lim);                                               \
        f = g_nnet ? net_fd(fd) : NULL;                                     \
        if (f && unconcerned(f)) {                                          \
            LEAVE();                                                        \
            return call(lim);                                               \
        }                                                                   \
        if (f) {                                                            \
            v = before_send(f, sc, (n));                                    \
            LEAVE();                                                        \
            if (v < 0)                                                      \
                return -1;                                                  \
            if (v > 0)                                                      \
                return (ssize_t)(n);                                        \
            return call(lim);                                               \
        }                                                                   \
        v = g_nfile && !(fd >= 0 && fd < UF_MAX_FDS && unconcerned(&g_fds[fd]))  \
            ? before_file_write(fd, sc, (n), &lim) : 0;                     \
        LEAVE();                                                            \
        if (v < 0)                                                          \
            return -1;                                                      \
        if (v > 0 && !(can_short))                                          \
            lim = (n);                                                      \
        return call(lim);                                                   \
    } while (0)

static size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t t = 0;
    for (int i = 0; iov && i < cnt; i++)
        t += iov[i].iov_len;
    return t;
}

UF_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    RESOLVE(write, "write");
#define CALL(m) real.write(fd, buf, m)
    ANY_WRITE(CALL, "write", n, 1);
#undef CALL
}

UF_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    RESOLVE(send, "send");
#define CALL(m) real.send(fd, buf, m, flags)
    ANY_WRITE(CALL, "send", n, 1);
#undef CALL
}

UF_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
                         socklen_t len)
{
    RESOLVE(sendto, "sendto");
#define CALL(m) real.sendto(fd, buf, m, flags, sa, len)
    ANY_WRITE(CALL, "sendto", n, 1);
#undef CALL
}

UF_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    RESOLVE(sendmsg, "sendmsg");
#define CALL(m) ((void)(m), real.sendmsg(fd, msg, flags))
    ANY_WRITE(CALL, "sendmsg", msg ? iov_total(msg->msg_iov, (int)msg->msg_iovlen) : 0, 0);
#undef CALL
}

UF_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    RESOLVE(writev, "writev");
#define CALL(m) ((void)(m), real.writev(fd, iov, cnt))
    ANY_WRITE(CALL, "writev", iov_total(iov, cnt), 0);
#undef CALL
}

UF_EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    RESOLVE(pwrite, "pwrite");
#define CALL(m) real.pwrite(fd, buf, m, off)
    ANY_WRITE(CALL, "pwrite", n, 1);
#undef CALL
}

UF_EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    RESOLVE(pwrite64, "pwrite64");
#define CALL(m) real.pwrite64(fd, buf, m, off)
    ANY_WRITE(CALL, "pwrite64", n, 1);
#undef CALL
}

UF_EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    RESOLVE(pwritev, "pwritev");
#define CALL(m) ((void)(m), real.pwritev(fd, iov, cnt, off))
    ANY_WRITE(CALL, "pwritev", iov_total(iov, cnt), 0);
#undef CALL
}

UF_EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
    RESOLVE(pwritev64, "pwritev64");
#define CALL(m) ((void)(m), real.pwritev64(fd, iov, cnt, off))
    ANY_WRITE(CALL, "pwritev64", iov_total(iov, cnt), 0);
#undef CALL
}

static int sync_call(int fd, int (*fn)(int), const char *sc)
{
    struct uf_rule r;
    char path[512];
    int hit = 0;
    if (!enter())
        return fn(fd);
    if (g_nfile) {
        pthread_mutex_lock(&g_lock);
        hit = file_rule(fd, 1, &r, path, sizeof path);
        pthread_mutex_unlock(&g_lock);
    }
    if (hit)
        log_line("fault", sc, r.id, "fsync", path, EIO, "%s failed", sc);
    LEAVE();
    if (hit) {
        errno = EIO;
        return -1;
    }
    return fn(fd);
}

UF_EXPORT int fsync(int fd)
{
    RESOLVE(fsync, "fsync");
    return sync_call(fd, real.fsync, "fsync");
}

UF_EXPORT int fdatasync(int fd)
{
    RESOLVE(fdatasync, "fdatasync");
    return sync_call(fd, real.fdatasync, "fdatasync");
}

/* ---- new fds and close: forget what we knew about the fd number ----------------------------- */

static int forget(int fd)
{
    if (fd >= 0 && fd < UF_MAX_FDS && !t_inside && g_ready) {
        struct uf_fd *f = &g_fds[fd];
        int peer = -1;
        char *path = NULL;
        t_inside = 1;
        pthread_mutex_lock(&g_lock);
        if (f->tracked || f->path_state || f->bh_peer >= 0) {
            peer = f->bh_peer;
            path = f->path;
            memset(f, 0, sizeof *f);
            f->bh_peer = -1;
        }
        pthread_mutex_unlock(&g_lock);
        free(path);
        if (peer >= 0)
            real.close(peer);
        t_inside = 0;
    }
    return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

UF_EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;
    RESOLVE(open, "open");
    va_start(ap, flags);
    mode = mode_arg(flags, ap);
    va_end(ap);
    return forget(real.open(path, flags, mode));
}

UF_EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;
    RESOLVE(open64, "open64");
    va_start(ap, flags);
    mode = mode_arg(flags, ap);
    va_end(ap);
    return forget(real.open64(path, flags, mode));
}

UF_EXPORT int openat(int dir, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;
    RESOLVE(openat, "openat");
    va_start(ap, flags);
    mode = mode_arg(flags, ap);
    va_end(ap);
    return forget(real.openat(dir, path, flags, mode));
}

UF_EXPORT int openat64(int dir, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;
    RESOLVE(openat64, "openat64");
    va_start(ap, flags);
    mode = mode_arg(flags, ap);
    va_end(ap);
    return forget(real.openat64(dir, path, flags, mode));
}

UF_EXPORT int creat(const char *path, mode_t mode)
{
    RESOLVE(creat, "creat");
    return forget(real.creat(path, mode));
}

UF_EXPORT int socket(int domain, int type, int protocol)
{
    RESOLVE(socket, "socket");
    return forget(real.socket(domain, type, protocol));
}

UF_EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
    RESOLVE(accept, "accept");
    return forget(real.accept(fd, sa, len));
}

UF_EXPORT int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    RESOLVE(accept4, "accept4");
    return forget(real.accept4(fd, sa, len, flags));
}

UF_EXPORT int dup2(int old, int new)
{
    RESOLVE(dup2, "dup2");
    if (old != new)
        forget(new);
    return real.dup2(old, new);
}

UF_EXPORT int dup3(int old, int new, int flags)
{
    RESOLVE(dup3, "dup3");
    forget(new);
    return real.dup3(old, new, flags);
}

/* ---- close: forget what we knew about the fd -------------------------------------------- */

UF_EXPORT int close(int fd)
{
    RESOLVE(close, "close");
    forget(fd);
    return real.close(fd);
}
