/* hotpatch demo: a tiny "quote service" that answers one request every 300 ms and keeps a running
 * count of requests and revenue, the state a restart would lose. */
#include <stdio.h>
#include <unistd.h>

int quote(int quantity);
const char *pricing_name(void);

static long served;
static long revenue;

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (;;) {
        int quantity = 1 + (int)(served % 4);
        int price = quote(quantity);
        served++;
        revenue += price;
        printf("request #%ld: %d widgets cost %d credits (%s), revenue so far %ld\n", served,
               quantity, price, pricing_name(), revenue);
        usleep(300000);
    }
}
