static inline int scale(int v)
{
    return v * 10;
}
