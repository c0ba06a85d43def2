# SO_ORIGINAL_DST straight from libc: uvloop's transports hand out a PseudoSocket whose getsockopt() builds a
# socket.socket around the fd on every call (a getsockname and an object per captured connection); this is the
# one getsockopt the outbound listener needs per connection.
cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen)

cdef extern from "<netinet/in.h>" nogil:
    int IPPROTO_IP

cdef enum:
    SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


def original_dst(int fd):
    """The pre-NAT IPv4 destination of an accepted socket as (4 packed address bytes, port): where a redirected
    connection was going (a connection conntrack saw but did not rewrite gives its own address), or None when
    netfilter has no entry for it (no conntrack, not IPv4, not a socket)."""
    cdef unsigned char addr[16]
    cdef socklen_t size = sizeof(addr)
    if getsockopt(fd, IPPROTO_IP, SO_ORIGINAL_DST, addr, &size) != 0 or size < 8:
        return None
    return PyBytes_FromStringAndSize(<char *>addr + 4, 4), (addr[2] << 8) | addr[3]
