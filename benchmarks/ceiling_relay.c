/* Ceiling relays for the bulk-throughput benchmark: what a proxy *pair* written in C can move on this machine,
 * measured in the same run as our ztunnel pair and the Envoy HBONE pair, so the 1.5x bulk target can be read
 * against what is physically possible here.
 *
 *   ceiling_relay plain LISTEN_IP PORT TARGET_IP TARGET_PORT
 *       read()/write() relay, no TLS: the kernel's socket copies and wake-ups, nothing else. Two of them
 *       chained (A on the client's core, B on the server's) are the floor of any user-space proxy pair.
 *   ceiling_relay tls-client|tls-server LISTEN_IP PORT TARGET_IP TARGET_PORT CERT KEY CA
 *       the same with TLS 1.3 mutual TLS (OpenSSL, socket mode, read-ahead, batched records on write,
 *       coalesced plain writes): A takes plaintext and sends TLS to B, B decrypts and sends plaintext on.
 *       No HTTP/2 framing: a TLS relay pair with everything HBONE adds on top removed.
 *
 * One thread per connection (poll() over both sides). Benchmark code only; never part of the data plane.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef WITH_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#define BUF (1 << 18)
#define RECORD 16384

enum mode { PLAIN, TLS_CLIENT, TLS_SERVER };
static enum mode mode;
static struct sockaddr_in target;
#ifdef WITH_TLS
static SSL_CTX *ctx;
#endif

static int write_all(int fd, const char *b, ssize_t n) {
    while (n > 0) {
        ssize_t m = write(fd, b, n);
        if (m <= 0) return -1;
        b += m;
        n -= m;
    }
    return 0;
}

static void plain_relay(int a, int b, char *buf) {
    struct pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    for (;;) {
        if (poll(p, 2, -1) < 0) return;
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(p[i].fd, buf, BUF);
            if (n <= 0 || write_all(p[1 - i].fd, buf, n)) return;
        }
    }
}

#ifdef WITH_TLS
/* plain: the cleartext socket; tls: the TLS socket, handshake done. Outgoing records go to a memory BIO and
 * leave in one write() per batch (OpenSSL would otherwise write each 16 KiB record separately). */
static void tls_relay(int plain, int tls, SSL *ssl, char *buf) {
    BIO *out = BIO_new(BIO_s_mem());
    /* the read side keeps SSL_set_fd's socket BIO; SSL_set_bio drops only its write reference */
    SSL_set_bio(ssl, SSL_get_rbio(ssl), out);
    struct pollfd p[2] = {{plain, POLLIN, 0}, {tls, POLLIN, 0}};
    for (;;) {
        if (!SSL_has_pending(ssl) && poll(p, 2, -1) < 0) return;
        if (SSL_has_pending(ssl) || (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            int n = SSL_read(ssl, buf, BUF);
            if (n <= 0) {
                if (SSL_get_error(ssl, n) == SSL_ERROR_WANT_READ) continue;
                return;
            }
            while (n < BUF - RECORD) { /* decrypt what is already here into one plain write */
                struct pollfd q = {tls, POLLIN, 0};
                if (!SSL_has_pending(ssl) && poll(&q, 1, 0) <= 0) break;
                int m = SSL_read(ssl, buf + n, BUF - n);
                if (m <= 0) break;
                n += m;
            }
            if (write_all(plain, buf, n)) return;
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(plain, buf, BUF);
            if (n <= 0 || SSL_write(ssl, buf, (int)n) != n) return;
            char *data;
            long len = BIO_get_mem_data(out, &data);
            if (write_all(tls, data, len)) return;
            (void)BIO_reset(out);
        }
        p[0].revents = p[1].revents = 0;
    }
}
#endif

static void *serve(void *arg) {
    int down = (int)(long)arg, one = 1;
    int up = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(down, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char *buf = malloc(BUF);
    if (connect(up, (struct sockaddr *)&target, sizeof target) == 0) {
        if (mode == PLAIN) {
            plain_relay(down, up, buf);
        }
#ifdef WITH_TLS
        else {
            int tls = mode == TLS_CLIENT ? up : down, plain = mode == TLS_CLIENT ? down : up;
            SSL *ssl = SSL_new(ctx);
            SSL_set_fd(ssl, tls);
            if ((mode == TLS_CLIENT ? SSL_connect(ssl) : SSL_accept(ssl)) == 1)
                tls_relay(plain, tls, ssl, buf);
            else
                ERR_print_errors_fp(stderr);
            SSL_free(ssl);
        }
#endif
    }
    free(buf);
    close(up);
    close(down);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: ceiling_relay plain|tls-client|tls-server LISTEN_IP PORT TARGET_IP TARGET_PORT"
                    " [CERT KEY CA]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 6) return usage();
    if (!strcmp(argv[1], "plain")) mode = PLAIN;
    else if (!strcmp(argv[1], "tls-client")) mode = TLS_CLIENT;
    else if (!strcmp(argv[1], "tls-server")) mode = TLS_SERVER;
    else return usage();
    signal(SIGPIPE, SIG_IGN);
    target.sin_family = AF_INET;
    target.sin_port = htons(atoi(argv[5]));
    if (inet_pton(AF_INET, argv[4], &target.sin_addr) != 1) return usage();
    if (mode != PLAIN) {
#ifdef WITH_TLS
        if (argc < 9) return usage();
        ctx = SSL_CTX_new(mode == TLS_CLIENT ? TLS_client_method() : TLS_server_method());
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_read_ahead(ctx, 1);
        SSL_CTX_set_default_read_buffer_len(ctx, BUF);
        SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, 0);
        if (SSL_CTX_use_certificate_chain_file(ctx, argv[6]) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, argv[7], SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_load_verify_locations(ctx, argv[8], 0) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
#else
        fprintf(stderr, "ceiling_relay: built without TLS (no OpenSSL headers)\n");
        return 2;
#endif
    }
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[3]));
    inet_pton(AF_INET, argv[2], &a.sin_addr);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4096)) {
        perror("listen");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int c = accept(l, 0, 0);
        pthread_t t;
        if (c < 0) continue;
        pthread_create(&t, 0, serve, (void *)(long)c);
        pthread_detach(t);
    }
}
