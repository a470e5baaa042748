/* valgrind stack registration (see fiber.h for the sanitizers). */
#include "internal.h"

#ifdef WEFT_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

unsigned weft__valgrind_stack_register(void *lo, void *hi)
{
#ifdef WEFT_HAVE_VALGRIND
    return VALGRIND_STACK_REGISTER(lo, hi);
#else
    (void)lo; (void)hi;
    return 0;
#endif
}

void weft__valgrind_stack_deregister(unsigned id)
{
#ifdef WEFT_HAVE_VALGRIND
    VALGRIND_STACK_DEREGISTER(id);
#else
    (void)id;
#endif
}
