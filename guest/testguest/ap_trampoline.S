/* Real-mode AP start-up code, copied to a page below 1 MiB and entered by SIPI at CS:0:
 * counts itself in and halts. Kept to three instructions: real mode is slow to emulate. */
  .section .rodata
  .code16
  .globl ap_trampoline_start, ap_trampoline_counter, ap_trampoline_end
ap_trampoline_start:
  lock incl %cs:(ap_trampoline_counter - ap_trampoline_start)
1:
  cli
  hlt
  jmp 1b
  .balign 4
ap_trampoline_counter:
  .long 0
ap_trampoline_end:
  .code64
