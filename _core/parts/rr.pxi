# RoundRobin: O(1) pick over a fixed slot array; replace() keeps the cursor (modulo the new length).

cdef class RoundRobin:
    cdef list _items
    cdef Py_ssize_t _n
    cdef Py_ssize_t _next

    def __init__(self, items=()):
        self._items = list(items)
        self._n = len(self._items)
        self._next = 0

    cpdef replace(self, items):
        self._items = list(items)
        self._n = len(self._items)
        if self._n:
            self._next %= self._n
        else:
            self._next = 0

    cpdef object pick(self):
        cdef Py_ssize_t i
        if self._n == 0:
            return None
        i = self._next
        self._next = i + 1 if i + 1 < self._n else 0
        return self._items[i]

    def items(self):
        return list(self._items)

    def __len__(self):
        return self._n
