/*
 * The platform interface for the worker thread-local (runtime/arch/<cpu>/tls.h,
 * found through the include path CMake sets): WEFT__TLS_LOAD(sym) reads the
 * pointer-sized initial-exec thread-local sym of the calling thread.
 *
 * Why assembly and not a C access: a coroutine may switch out on one thread
 * and resume on another, and a compiler may keep a thread-local's address
 * (the thread pointer plus its offset) in a register across the call that
 * switches.  Each WEFT__TLS_LOAD reads the thread pointer afresh.  It is
 * volatile (never merged with another load nor dropped) and clobbers memory
 * (never moved across the switch, which the compiler sees as a call that
 * writes memory).  Inlined, it costs two loads; the out-of-line accessor it
 * replaces cost a call on every switch, spawn and wake (docs/scheduler.md,
 * section 13).
 *
 * x86-64: the offset from the GOT, the value %fs-relative.  The linker
 * relaxes the GOT load to a constant in an executable.
 */
#ifndef WEFT_ARCH_TLS_H
#define WEFT_ARCH_TLS_H

#define WEFT__TLS_LOAD(sym)                                                   \
    __extension__({                                                           \
        void *v_;                                                             \
        __asm__ volatile("movq " #sym "@gottpoff(%%rip), %0\n\t"              \
                         "movq %%fs:(%0), %0"                                 \
                         : "=r"(v_)                                           \
                         :                                                    \
                         : "memory");                                         \
        v_;                                                                   \
    })

#endif
