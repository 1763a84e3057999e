/* The bzImage file: real-mode setup sectors with the setup header (Documentation/x86/boot.rst,
 * protocol 2.15) followed by the protected-mode payload (PAYLOAD_BIN, loaded at 0x100000).
 *
 * Loaders using the 64-bit or 32-bit protocol only read the header. Loaders using the 16-bit
 * protocol (QEMU -M pc, qboot) run the real-mode code at 0x200: it fills the e820 table of the
 * setup area (which then serves as boot_params), enters protected mode and jumps to
 * code32_start with ESI = boot_params. */
#define SETUP_SECTS 8                  /* 0x1000 of zero-page area + code, minus the boot sector */
#define LOADED_HIGH 0x01
#define XLF_KERNEL_64 0x01
#define PAYLOAD_LOAD 0x100000
#define E820_ENTRIES 0x1e8
#define E820_TABLE 0x2d0
#define E820_MAX 128
#define SMAP 0x534d4150

  .code16
  .section .text
  .globl _start
_start:
  .org 0x1f1
setup_sects:      .byte SETUP_SECTS
root_flags:       .word 0
syssize:          .long (payload_end - payload_start + 15) / 16
ram_size:         .word 0
vid_mode:         .word 0xffff
root_dev:         .word 0
boot_flag:        .word 0xaa55
  /* 0x200 */
jump:             .byte 0xeb, start_of_setup - 1f
1:                .ascii "HdrS"
version:          .word 0x020f
realmode_swtch:   .long 0
start_sys_seg:    .word 0
kernel_version:   .word 0
type_of_loader:   .byte 0
loadflags:        .byte LOADED_HIGH
setup_move_size:  .word 0
code32_start:     .long PAYLOAD_LOAD
ramdisk_image:    .long 0
ramdisk_size:     .long 0
bootsect_kludge:  .long 0
heap_end_ptr:     .word 0
ext_loader_ver:   .byte 0
ext_loader_type:  .byte 0
cmd_line_ptr:     .long 0
initrd_addr_max:  .long 0x7fffffff
kernel_alignment: .long 0x100000
relocatable:      .byte 0
min_alignment:    .byte 12
xloadflags:       .word XLF_KERNEL_64
cmdline_size:     .long 4095
hardware_subarch: .long 0
hw_subarch_data:  .quad 0
payload_offset:   .long 0
payload_length:   .long 0
setup_data:       .quad 0
pref_address:     .quad PAYLOAD_LOAD
init_size:        .long payload_end - payload_start
handover_offset:  .long 0
kernel_info:      .long 0
  /* 0x26c: end of the header; boot_params has padding here. */
start_of_setup:
  jmp real_mode_setup

  /* Past the end of boot_params (4 KiB): the real-mode code and its data. */
  .org 0x1000
real_mode_setup:
  /* The loader sets DS = the setup area's segment and CS = DS + 0x20 (boot.rst). */
  cli
  cld
  movw %ds, %ax
  movw %ax, %es
  movw %ax, %ss
  movw $0xf000, %sp
  /* Fast A20 gate. */
  inb $0x92, %al
  orb $0x02, %al
  andb $0xfe, %al
  outb %al, $0x92
  /* BIOS memory map (INT 15h, E820h) straight into boot_params.e820_table. */
  xorl %ebx, %ebx
  movw $E820_TABLE, %di
  xorw %bp, %bp
e820_next:
  movl $0xe820, %eax
  movl $20, %ecx
  movl $SMAP, %edx
  int $0x15
  jc e820_done
  cmpl $SMAP, %eax
  jne e820_done
  incw %bp
  addw $20, %di
  testl %ebx, %ebx
  jz e820_done
  cmpw $E820_MAX, %bp
  jb e820_next
e820_done:
  movw %bp, %ax
  movb %al, E820_ENTRIES
  /* Protected mode with a flat GDT; the setup area's linear address is boot_params. */
  xorl %esi, %esi
  movw %ds, %si
  shll $4, %esi
  movl %esi, %eax
  addl $gdt, %eax
  movl %eax, gdt_descriptor + 2
  movl %esi, %eax
  addl $protected_mode, %eax
  movl %eax, protected_mode_ptr
  lgdtl gdt_descriptor
  movl %cr0, %eax
  orl $1, %eax
  movl %eax, %cr0
  ljmpl *protected_mode_ptr

  .code32
protected_mode:
  movl $0x18, %eax
  movl %eax, %ds
  movl %eax, %es
  movl %eax, %ss
  movl %eax, %fs
  movl %eax, %gs
  movl 0x214(%esi), %eax   /* code32_start */
  xorl %ebx, %ebx
  xorl %ebp, %ebp
  xorl %edi, %edi
  jmp *%eax

  .balign 8
gdt:
  .quad 0
  .quad 0
  .quad 0x00cf9a000000ffff  /* 0x10: 32-bit flat code (__BOOT_CS) */
  .quad 0x00cf92000000ffff  /* 0x18: flat data (__BOOT_DS) */
gdt_end:
gdt_descriptor:
  .word gdt_end - gdt - 1
  .long 0
protected_mode_ptr:
  .long 0
  .word 0x10

  .org (SETUP_SECTS + 1) * 512
payload_start:
  .incbin PAYLOAD_BIN
payload_end:
