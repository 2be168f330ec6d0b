// The CPU CUDA emulator's stand-in for the toolkit's math_constants.h (the constants the kernels use).
#pragma once
#include <limits>

#define CUDART_INF (std::numeric_limits<double>::infinity())
#define CUDART_INF_F (std::numeric_limits<float>::infinity())
#define CUDART_NAN_F (std::numeric_limits<float>::quiet_NaN())
