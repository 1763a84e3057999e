/* Start of the bzImage protected-mode payload, loaded at 0x100000 (not relocatable).
 * Documentation/x86/boot.rst: the 32-bit entry is the payload start with ESI = boot_params;
 * the 64-bit entry is payload + 0x200, long mode, identity paging, RSI = boot_params. */
#define BOOT_BZIMAGE32 2
#define BOOT_BZIMAGE64 3

  .section .head.text, "ax"
  .code32
  .globl startup_32
startup_32:
  movl $BOOT_BZIMAGE32, %edi
  jmp enter_long_mode

  .org 0x200
  .code64
  .globl startup_64
startup_64:
  cli
  cld
  movl $BOOT_BZIMAGE64, %edi
  jmp start64
