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
    """The pre-REDIRECT IPv4 destination of a captured socket as (4 packed address bytes, port), or None when the
    socket was not redirected (or is not IPv4)."""
    cdef unsigned char addr[16]
    cdef socklen_t size = sizeof(addr)
    if getsockopt(fd, IPPROTO_IP, SO_ORIGINAL_DST, addr, &size) != 0 or size < 8:
        return None
    return PyBytes_FromStringAndSize(<char *>addr + 4, 4), (addr[2] << 8) | addr[3]
