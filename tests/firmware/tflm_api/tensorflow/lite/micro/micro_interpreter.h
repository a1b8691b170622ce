// Minimal declarations of what the bundle README's C++ snippet uses from TensorFlow Lite
// Micro's tensorflow/lite/micro/micro_interpreter.h (which brings tflite::GetModel with the
// schema), with the constructor's and AllocateTensors' real signatures (tflite-micro, 2026).
#ifndef DEPLOYER_TEST_MICRO_INTERPRETER_H_
#define DEPLOYER_TEST_MICRO_INTERPRETER_H_

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace tflite {

struct Model;
const Model* GetModel(const void* buf);
class MicroResourceVariables;
class MicroProfilerInterface;

class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver, uint8_t* tensor_arena,
                   size_t tensor_arena_size, MicroResourceVariables* resource_variables = nullptr,
                   MicroProfilerInterface* profiler = nullptr, bool preserve_all_tensors = false);
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
};

}  // namespace tflite

#endif  // DEPLOYER_TEST_MICRO_INTERPRETER_H_
