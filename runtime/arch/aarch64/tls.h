/*
 * The platform interface for the worker thread-local: see
 * runtime/arch/x86_64/tls.h for the contract and why it is assembly.
 *
 * aarch64: the offset from the GOT (initial-exec), added to tpidr_el0 read
 * afresh: the register a compiler would otherwise keep across a switch.
 */
#ifndef WEFT_ARCH_TLS_H
#define WEFT_ARCH_TLS_H

#define WEFT__TLS_LOAD(sym)                                                   \
    __extension__({                                                           \
        void *v_;                                                             \
        void *tp_;                                                            \
        __asm__ volatile("adrp %0, :gottprel:" #sym "\n\t"                    \
                         "ldr %0, [%0, #:gottprel_lo12:" #sym "]\n\t"        \
                         "mrs %1, tpidr_el0\n\t"                              \
                         "ldr %0, [%1, %0]"                                   \
                         : "=&r"(v_), "=&r"(tp_)                              \
                         :                                                    \
                         : "memory");                                         \
        v_;                                                                   \
    })

#endif
