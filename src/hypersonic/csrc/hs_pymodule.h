/*
 * hs_pymodule.h - naming of JIT-built extension modules.
 *
 * hypersonic.jit names every module `_hs_<hash>` and passes that name as
 * -DHS_MODULE_NAME=_hs_<hash>; a module's source defines its init function as
 * `PyMODINIT_FUNC HS_PYINIT(void)` and its PyModuleDef name as
 * HS_MODULE_NAME_STR.
 */
#ifndef HS_PYMODULE_H
#define HS_PYMODULE_H

#ifndef HS_MODULE_NAME
#error "HS_MODULE_NAME must be defined by the build (hypersonic.jit passes -DHS_MODULE_NAME=...)"
#endif

#define HS_CAT_(a, b) a##b
#define HS_CAT(a, b) HS_CAT_(a, b)
#define HS_STR_(a) #a
#define HS_STR(a) HS_STR_(a)
#define HS_PYINIT HS_CAT(PyInit_, HS_MODULE_NAME)
#define HS_MODULE_NAME_STR HS_STR(HS_MODULE_NAME)

#endif /* HS_PYMODULE_H */
