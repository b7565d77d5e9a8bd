# SPDX-License-Identifier: GPL-2.0
#
# tcplog: the kernel module tcplog.ko and the userspace tool `tcplog`.
#
#   make                      build both for Debian 13's Rust-enabled 7.3 kernel, inside the build
#                             root that scripts/build-root.sh makes (needs root the first time)
#   make KDIR=/path/to/tree   build the module against that Rust-enabled kernel build tree with its
#                             own toolchain, and the tool with the host's cargo
#   make demo                 build, boot the VM, show the tool working (README's main command)
#   make check                every test: host, module, VM; ends with "N passed, N failed"
#   make clean
#
# kbuild reads Kbuild, not this file, when it builds the module (M=...).

KDIR ?=
CARGO ?= cargo

.PHONY: all module tool demo check clean

ifeq ($(KDIR),)
all:
	./scripts/build.sh >/dev/null
else
all: module tool

module:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

tool:
	$(CARGO) build --release --locked -p tcplog
endif

demo:
	./scripts/demo.sh

check:
	./scripts/check.sh

clean:
	rm -f *.o *.ko *.mod *.mod.c .*.cmd Module.symvers modules.order module/*.o module/.*.cmd \
		module/bindings_generated.rs
	rm -rf target qemu-test/out
