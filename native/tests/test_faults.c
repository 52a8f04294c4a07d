/* The library's own tests, built with ASan and UBSan (native.build_tests) and run by
 * tests/native/test_sanitized.py. The interposers are linked into this program, so the
 * calls below go through them (no LD_PRELOAD: the sanitizer runtime must come first).
 * Rules come from a control file this program writes (UNBROKEN_FAULTS_POLL_MS=0). */
#define _GNU_SOURCE
#include "unbroken_faults.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

static void test_parse(void)
{
    struct uf_rules r;
    char err[300];
    CHECK(uf_parse_rules("refuse dst=127.0.0.1:80,[::1]:81,:82,10.0.0.1 id=a; slice dst=* bytes=3\n# c\n",
                         &r, err, sizeof err) == 0);
    CHECK(r.n == 2 && r.rule[0].ndests == 4 && strcmp(r.rule[0].id, "a") == 0);
    CHECK(r.rule[0].dests[1].family == AF_INET6 && r.rule[0].dests[1].port == 81);
    CHECK(r.rule[0].dests[2].family == 0 && r.rule[0].dests[2].port == 82);
    {
        uint8_t lo[4] = {127, 0, 0, 1}, other[4] = {127, 0, 0, 2};
        CHECK(uf_dest_match(&r.rule[0], AF_INET, lo, 80));
        CHECK(!uf_dest_match(&r.rule[0], AF_INET, lo, 79));
        CHECK(uf_dest_match(&r.rule[0], AF_INET, other, 82));
        CHECK(uf_dest_match(&r.rule[1], AF_INET, other, 1));
    }
    uf_free_rules(&r);
    const char *bad[] = {"explode", "enospc", "refuse path=/x", "slice dst=*", "refuse dst=1.2.3.4:99999",
                         "refuse dst=nohost", "refuse colour=red", "drop p=2", "refuse fraction=0.5",
                         "refuse id=\"q\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CHECK(uf_parse_rules(bad[i], &r, err, sizeof err) == -1 && err[0]);
    }
    /* A long line of many destinations. */
    {
        char big[8192] = "refuse fraction=0.3 seed=7 dst=";
        for (int i = 0; i < 300; i++)
            snprintf(big + strlen(big), sizeof big - strlen(big), "%s127.0.0.1:%d", i ? "," : "", 1000 + i);
        CHECK(uf_parse_rules(big, &r, err, sizeof err) == 0);
        size_t chosen = 0;
        for (size_t i = 0; i < r.rule[0].ndests; i++)
            chosen += r.rule[0].selected[i];
        CHECK(r.rule[0].ndests == 300 && chosen == 90);
        uf_free_rules(&r);
    }
}

static void test_prng(void)
{
    uint64_t a = 42, b = 42;
    for (int i = 0; i < 1000; i++) {
        double u = uf_uniform(&a);
        CHECK(u >= 0.0 && u < 1.0);
        CHECK(uf_uniform(&b) == u);
    }
    CHECK(uf_fnv1a("a", 14695981039346656037ULL) == 0xaf63dc4c8601ec8cULL);
}

static const char *control;

static void set_control(const char *text)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", control);
    FILE *f = fopen(tmp, "w");
    fputs(text, f);
    fclose(f);
    rename(tmp, control);
}

static int listener(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    bind(s, (struct sockaddr *)&a, sizeof a);
    listen(s, 16);
    getsockname(s, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return s;
}

static int dial(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    return s;
}

static void test_network(void)
{
    int port, l = listener(&port), c, srv;
    char rules[256], buf[64];
    snprintf(rules, sizeof rules, "refuse dst=127.0.0.1:%d id=t1\n", port);
    set_control(rules);
    CHECK(dial(port) == -1 && errno == ECONNREFUSED);
    snprintf(rules, sizeof rules, "slice dst=:%d bytes=3\nreset dst=:%d after=10\n", port, port);
    set_control(rules);
    c = dial(port);
    CHECK(c >= 0);
    srv = accept(l, NULL, NULL);
    CHECK(write(srv, "0123456789abcdef", 16) == 16);
    size_t total = 0;
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0) {
        CHECK(n <= 3);
        total += (size_t)n;
    }
    CHECK(n == -1 && errno == ECONNRESET && total == 10);
    CHECK(send(c, "x", 1, 0) == -1 && errno == ECONNRESET);
    close(c);
    close(srv);
    set_control("");
    c = dial(port);
    CHECK(c >= 0);
    srv = accept(l, NULL, NULL);
    CHECK(send(c, "ping", 4, 0) == 4 && recv(srv, buf, sizeof buf, 0) == 4);
    close(c);
    close(srv);
    close(l);
}

static void *hammer(void *arg)
{
    int fd = *(int *)arg;
    char b[32] = {0};
    for (int i = 0; i < 2000; i++)
        CHECK(pwrite(fd, b, sizeof b, (off_t)(i % 8) * 32) == 32);
    return NULL;
}

static void test_files(const char *dir)
{
    char path[512], rules[1024];
    int fd;
    snprintf(path, sizeof path, "%s/data.db", dir);
    snprintf(rules, sizeof rules, "enospc path=%s/*.db nth=2\nfsync path=%s/*\nshort path=%s/s bytes=2\n",
             dir, dir, dir);
    set_control(rules);
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(write(fd, "abc", 3) == 3);
    CHECK(write(fd, "abc", 3) == -1 && errno == ENOSPC);
    CHECK(write(fd, "abc", 3) == 3);
    CHECK(fsync(fd) == -1 && errno == EIO);
    CHECK(fdatasync(fd) == -1 && errno == EIO);
    close(fd);
    snprintf(path, sizeof path, "%s/s", dir);
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(write(fd, "abcdef", 6) == 2);
    close(fd);
    /* A cached fd number reused for another file (dup2 onto it) is noticed. */
    {
        char other[512];
        int a, b;
        snprintf(rules, sizeof rules, "eio path=%s/*.bad\n", dir);
        set_control(rules);
        snprintf(path, sizeof path, "%s/fine", dir);
        snprintf(other, sizeof other, "%s/x.bad", dir);
        a = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        b = open(other, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        CHECK(write(a, "ok", 2) == 2);
        CHECK(write(b, "no", 2) == -1 && errno == EIO);
        CHECK(dup2(b, a) == a);
        CHECK(write(a, "no", 2) == -1 && errno == EIO);
        close(a);
        close(b);
    }
    set_control("");
    snprintf(path, sizeof path, "%s/threads", dir);
    fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, &fd);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(fsync(fd) == 0);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR (UNBROKEN_FAULTS_FILE=DIR/rules, UNBROKEN_FAULTS_POLL_MS=0)\n", argv[0]);
        return 2;
    }
    control = getenv("UNBROKEN_FAULTS_FILE");
    if (!control)
        return 2;
    test_parse();
    test_prng();
    test_network();
    test_files(argv[1]);
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    else
        printf("ok\n");
    return failures ? 1 : 0;
}
