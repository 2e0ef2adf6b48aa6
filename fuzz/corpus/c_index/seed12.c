static int count;

int offset(void)
{
    count++;
    return 1;
}
