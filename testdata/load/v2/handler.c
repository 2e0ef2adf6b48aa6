/* The request handler of the load-test server: v2 changes the reply's version tag and value. */
#include <stdio.h>

extern long requests;

int handle_request(long id, long k, char *reply, size_t size)
{
    __atomic_fetch_add(&requests, 1, __ATOMIC_SEQ_CST);
    return snprintf(reply, size, "OK v2 %ld %ld\n", id, k * 3 + 1);
}
