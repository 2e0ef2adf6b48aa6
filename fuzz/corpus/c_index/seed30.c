/* Pricing rules of the demo service. */

static int unit_price(int quantity)
{
    /* Bulk discount: three or more widgets cost 8 credits each. */
    return quantity >= 3 ? 8 : 10;
}

int quote(int quantity)
{
    return quantity * unit_price(quantity);
}

const char *pricing_name(void)
{
    return "bulk discount";
}
