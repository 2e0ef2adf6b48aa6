/* Pricing rules of the demo service. */

static int unit_price(int quantity)
{
    (void)quantity;
    return 10;
}

int quote(int quantity)
{
    return quantity * unit_price(quantity);
}

const char *pricing_name(void)
{
    return "list price";
}
