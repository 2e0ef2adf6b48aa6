int hits;

int state(void)
{
    return hits;
}

int value(void)
{
    hits++;
    return 8;
}
