/* The built-in worker's static executable ($(BUILD)/sigvisor-worker), carried inside
 * sigvisor: see worker_image.h. Linked into sigvisor only; a sanitizer build, the unit
 * tests and the fuzzers go without it (the symbols are weak where they are used). */
	.section .rodata
	.balign 64
	.globl sigvisor_worker_image
	.type sigvisor_worker_image, %object
sigvisor_worker_image:
	.incbin WORKER_IMAGE
	.globl sigvisor_worker_image_end
sigvisor_worker_image_end:
	.size sigvisor_worker_image, sigvisor_worker_image_end - sigvisor_worker_image
	.section .note.GNU-stack, "", %progbits
