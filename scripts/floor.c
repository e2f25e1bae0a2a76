// The floor for scripts/bench: the least work any FastCGI health bridge can do per probe, at one
// connection. Blocking I/O, no event loop, no timeouts, no HTTP parsing: per request one recv of the
// HTTP request, then socket, setsockopt (SO_LINGER 0), connect, one send of a prebuilt FastCGI
// request, recv until END_REQUEST, close, and one send of a fixed "200 ok". Eight system calls.
// Not a usable tool (it serves one connection at a time and trusts every byte); it only tells how
// much of a bridge's CPU time the kernel's TCP work costs on this machine.
//
//   floor LISTEN_PORT PHP_FPM_PORT      (both on 127.0.0.1)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned char request[1024];
static size_t request_len;

static void record(int type, const unsigned char *content, size_t len) {
    unsigned char *p = request + request_len;
    size_t pad = (8 - len % 8) % 8;
    p[0] = 1, p[1] = type, p[2] = 0, p[3] = 1, p[4] = len >> 8, p[5] = len & 255, p[6] = pad, p[7] = 0;
    memcpy(p + 8, content, len);
    memset(p + 8 + len, 0, pad);
    request_len += 8 + len + pad;
}

static size_t pair(unsigned char *out, const char *name, const char *value) {
    size_t n = strlen(name), v = strlen(value);
    out[0] = n, out[1] = v;
    memcpy(out + 2, name, n);
    memcpy(out + 2 + n, value, v);
    return 2 + n + v;
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor LISTEN_PORT PHP_FPM_PORT\n");
        return 2;
    }
    struct sockaddr_in listen_at = loopback(atoi(argv[1])), fpm = loopback(atoi(argv[2]));
    unsigned char begin[8] = {0, 1, 0, 0, 0, 0, 0, 0}, params[256];
    size_t len = 0;
    len += pair(params + len, "SCRIPT_FILENAME", "/fpm-ping");
    len += pair(params + len, "SCRIPT_NAME", "/fpm-ping");
    len += pair(params + len, "REQUEST_METHOD", "GET");
    len += pair(params + len, "REQUEST_URI", "/fpm-ping");
    record(1, begin, sizeof begin); // BEGIN_REQUEST, RESPONDER
    record(4, params, len);         // PARAMS
    record(4, params, 0);           // end of PARAMS
    record(5, params, 0);           // end of STDIN

    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&listen_at, sizeof listen_at) || listen(listener, 128)) {
        perror("floor: listen");
        return 1;
    }
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
    static const char down[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\ndown\n";
    struct linger reset = {1, 0};
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0)
            continue;
        char head[8192];
        unsigned char answer[8192];
        while (recv(client, head, sizeof head, 0) > 0) {
            int healthy = 0, s = socket(AF_INET, SOCK_STREAM, 0);
            setsockopt(s, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
            if (connect(s, (struct sockaddr *)&fpm, sizeof fpm) == 0 &&
                send(s, request, request_len, MSG_NOSIGNAL) == (ssize_t)request_len) {
                size_t got = 0;
                ssize_t n;
                while (!healthy && got < sizeof answer &&
                       (n = recv(s, answer + got, sizeof answer - got, 0)) > 0) {
                    got += n;
                    for (size_t at = 0; at + 8 <= got;
                         at += 8 + ((answer[at + 4] << 8) | answer[at + 5]) + answer[at + 6])
                        if (answer[at + 1] == 3) // END_REQUEST
                            healthy = 1;
                }
            }
            close(s);
            if (healthy)
                send(client, ok, sizeof ok - 1, MSG_NOSIGNAL);
            else
                send(client, down, sizeof down - 1, MSG_NOSIGNAL);
        }
        close(client);
    }
}
