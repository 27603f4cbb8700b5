# Finds the external dependencies once, honouring the RAVENSP_WITH_* switches.
# A switch that is ON but whose dependency is missing is an error, not a silent
# downgrade: the user asked for that part.

if(RAVENSP_WITH_TORCH)
  if(NOT Torch_DIR)
    find_package(Python COMPONENTS Interpreter REQUIRED)
    execute_process(
      COMMAND ${Python_EXECUTABLE} -c "import torch; print(torch.utils.cmake_prefix_path)"
      OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "RAVENSP_WITH_TORCH=ON but `${Python_EXECUTABLE} -c 'import torch'` failed; "
                          "install torch or set Torch_DIR")
    endif()
    list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
  endif()
  # Torch's CMake adds -gencode flags for every arch it knows unless told the
  # list; keep the build to what CMAKE_CUDA_ARCHITECTURES asks (sm_90a).
  if(RAVENSP_WITH_CUDA AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
    set(ENV{TORCH_CUDA_ARCH_LIST} "9.0a")
  endif()
  find_package(Torch REQUIRED)
  # torch's CMake adds its own flags to CMAKE_CXX_FLAGS; keep ours separate.
  find_library(TORCH_PYTHON_LIBRARY torch_python PATHS "${TORCH_INSTALL_PREFIX}/lib" NO_DEFAULT_PATH)
endif()

if(RAVENSP_WITH_MPI)
  find_package(MPI REQUIRED COMPONENTS CXX)
endif()

if(RAVENSP_WITH_NCCL)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include)
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    message(FATAL_ERROR "RAVENSP_WITH_NCCL=ON but nccl.h / libnccl were not found (set NCCL_HOME)")
  endif()
  add_library(ravensp_nccl INTERFACE)
  target_include_directories(ravensp_nccl INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(ravensp_nccl INTERFACE ${NCCL_LIBRARY})
endif()

if(RAVENSP_WITH_PYTHON)
  find_package(Python COMPONENTS Interpreter Development.Module REQUIRED)
  if(NOT pybind11_DIR)
    execute_process(COMMAND ${Python_EXECUTABLE} -c "import pybind11; print(pybind11.get_cmake_dir())"
                    OUTPUT_VARIABLE pybind11_DIR OUTPUT_STRIP_TRAILING_WHITESPACE)
  endif()
  find_package(pybind11 CONFIG REQUIRED)
endif()

if(RAVENSP_WITH_LAUNCHER)
  find_package(Boost QUIET COMPONENTS program_options)
  if(Boost_program_options_FOUND)
    set(RAVENSP_BOOST_PO_TARGET Boost::program_options)
  elseif(RAVENSP_BOOST_PO_SOURCE)
    # Boost 1.83 headers exist on the GPU machine but not the compiled library:
    # compile Program_options' own sources (never committed) into a static lib.
    find_package(Boost REQUIRED)
    file(GLOB _po_src ${RAVENSP_BOOST_PO_SOURCE}/src/*.cpp)
    if(NOT _po_src)
      message(FATAL_ERROR "RAVENSP_BOOST_PO_SOURCE=${RAVENSP_BOOST_PO_SOURCE} has no src/*.cpp")
    endif()
    add_library(ravensp_boost_po STATIC ${_po_src})
    target_link_libraries(ravensp_boost_po PUBLIC Boost::headers)
    target_compile_definitions(ravensp_boost_po PUBLIC BOOST_PROGRAM_OPTIONS_NO_LIB)
    set(RAVENSP_BOOST_PO_TARGET ravensp_boost_po)
  else()
    message(FATAL_ERROR "RAVENSP_WITH_LAUNCHER=ON needs Boost.Program_options: install it "
                        "(libboost-program-options-dev) or set RAVENSP_BOOST_PO_SOURCE to its sources, "
                        "or pass -DRAVENSP_WITH_LAUNCHER=OFF")
  endif()
endif()

if(RAVENSP_WITH_TESTS)
  find_package(GTest REQUIRED)
endif()
