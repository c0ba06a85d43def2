# Python callables cached as module globals so hot code never looks them up.
import ssl as _ssl

cdef object SSLWantReadError = _ssl.SSLWantReadError
cdef object SSLZeroReturnError = _ssl.SSLZeroReturnError
cdef object SSLError = _ssl.SSLError
