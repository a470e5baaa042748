/* A program built against an installed weft (pkg-config and CMake package). */
#include <stdio.h>
#include <weft.h>

static void *hello(void *arg) { return arg; }
static void *main_task(void *arg)
{
    void *r = NULL;
    weft_task *t = weft_spawn(hello, arg);
    return weft_join(t, &r) == 0 ? r : NULL;
}

int main(void)
{
    void *r = NULL;
    int rc = weft_run(main_task, (void *)"installed weft works", &r);
    if (rc != 0 || !r)
        return 1;
    puts((const char *)r);
    return 0;
}
