/* Plain "number,number,...\n" lines -> a float32 feature matrix and float64 labels.
 *
 * Why C: NT3's upstream files are ~1,400 lines of 60,484 numbers. Finding the separators
 * with numpy and casting with pyarrow costs ~2.7 ns a byte on these cores; one pass here
 * costs ~1. Values are correctly rounded to float64 (Clinger's exact fast path, strtod for
 * the rest), then rounded to float32: bit-identical to pandas/pyarrow float64 -> float32.
 * Anything that is not a plain decimal number (nan, inf, a space, CR, quotes, an empty or
 * a short row) is refused with its byte offset; the caller's general reader then parses
 * the file or names the bad cell. The GIL is released while parsing, so blocks of one file
 * are parsed on several threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const double POW10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)

/* Eight ASCII digits at p as a number, or -1 when they are not all digits: three multiplies
 * instead of eight dependent multiply-adds (the well-known SWAR digit trick). */
static inline int64_t eight_digits(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    if (((v & UINT64_C(0xF0F0F0F0F0F0F0F0)) |
         (((v + UINT64_C(0x0606060606060606)) & UINT64_C(0xF0F0F0F0F0F0F0F0)) >> 4)) !=
        UINT64_C(0x3333333333333333))
        return -1;
    v = (v & UINT64_C(0x0F0F0F0F0F0F0F0F)) * 2561 >> 8;
    v = (v & UINT64_C(0x00FF00FF00FF00FF)) * 6553601 >> 16;
    return (int64_t)((v & UINT64_C(0x0000FFFF0000FFFF)) * UINT64_C(42949672960001) >> 32);
}

/* The digits at p into *mantissa (overflow past 19 digits is harmless: the caller then
 * uses strtod); returns the byte after them. ``end`` bounds the 8-byte reads. */
static inline const char *digits(const char *p, const char *end, uint64_t *mantissa)
{
    uint64_t m = *mantissa;
    while (end - p >= 8) {
        int64_t eight = eight_digits(p);
        if (eight < 0)
            break;
        m = m * 100000000u + (uint64_t)eight;
        p += 8;
    }
    for (; IS_DIGIT(*p); p++)
        m = m * 10 + (unsigned)(*p - '0');
    *mantissa = m;
    return p;
}

/* One value from p; returns the byte after it (the caller checks it is the separator it
 * expects) or NULL when the value is not a plain decimal number. The text ends with '\n',
 * which stops every byte loop; ``end`` bounds the 8-byte reads. */
static const char *parse_value(const char *p, const char *end, double *out)
{
    const char *start = p;
    int negative = 0;
    if (*p == '-' || *p == '+') {
        negative = (*p == '-');
        p++;
    }
    uint64_t mantissa = 0;
    const char *first = p;
    p = digits(p, end, &mantissa);
    Py_ssize_t count = p - first;
    int exponent = 0;
    if (*p == '.') {
        const char *fraction = ++p;
        p = digits(p, end, &mantissa);
        count += p - fraction;
        exponent = -(int)(p - fraction);
    }
    if (count == 0 || count > 1000)
        return NULL;
    if (*p == 'e' || *p == 'E') {
        p++;
        int negative_exponent = 0, e = 0, n = 0;
        if (*p == '-' || *p == '+') {
            negative_exponent = (*p == '-');
            p++;
        }
        for (; IS_DIGIT(*p); p++, n++)
            if (e < 100000)
                e = e * 10 + (*p - '0');
        if (!n)
            return NULL;
        exponent += negative_exponent ? -e : e;
    }
    double value;
    if (count <= 19 && mantissa <= (UINT64_C(1) << 53) && exponent >= -22 && exponent <= 22) {
        /* Both operands exact, one correctly rounded operation (Clinger 1990). */
        value = exponent < 0 ? (double)mantissa / POW10[-exponent]
                             : (double)mantissa * POW10[exponent];
        *out = negative ? -value : value;
        return p;
    }
    char *stop;
    value = strtod(start, &stop);
    if (stop != p)
        return NULL;
    *out = value;
    return p;
}

/* parse(text, features, labels, width) -> rows
 * text: whole lines, the last ending in '\n'; features: writable C-contiguous float32 of at
 * least rows * (width - 1) values; labels: writable float64 of at least rows values.
 * Raises ValueError("offset N") where the text is not plain. */
static PyObject *fastcsv_parse(PyObject *self, PyObject *args)
{
    Py_buffer text, features, labels;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*w*w*n", &text, &features, &labels, &width))
        return NULL;
    PyObject *result = NULL;
    const char *begin = (const char *)text.buf;
    Py_ssize_t size = text.len;
    Py_ssize_t capacity_rows = labels.len / (Py_ssize_t)sizeof(double);
    if (width < 2) {
        PyErr_SetString(PyExc_ValueError, "width must be at least 2");
        goto done;
    }
    if (features.len / (Py_ssize_t)sizeof(float) < capacity_rows * (width - 1))
        capacity_rows = features.len / (Py_ssize_t)sizeof(float) / (width - 1);
    if (size == 0 || begin[size - 1] != '\n') {
        PyErr_SetString(PyExc_ValueError, "offset 0: text must end with a newline");
        goto done;
    }
    float *x = (float *)features.buf;
    double *y = (double *)labels.buf;
    const char *p = begin, *end = begin + size, *bad = NULL;
    Py_ssize_t rows = 0;
    Py_BEGIN_ALLOW_THREADS
    while (p < end) {
        if (rows >= capacity_rows) {
            bad = p;
            break;
        }
        double value;
        const char *q = parse_value(p, end, &value);
        if (q == NULL || *q != ',') {
            bad = q ? q : p;
            break;
        }
        y[rows] = value;
        p = q + 1;
        float *row = x + rows * (width - 1);
        for (Py_ssize_t column = 1; column < width; column++) {
            q = parse_value(p, end, &value);
            if (q == NULL || *q != (column == width - 1 ? '\n' : ',')) {
                bad = q ? q : p;
                break;
            }
            row[column - 1] = (float)value;
            p = q + 1;
        }
        if (bad)
            break;
        rows++;
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_Format(PyExc_ValueError, "offset %zd: not a plain number row (row %zd)",
                     (Py_ssize_t)(bad - begin), rows);
        goto done;
    }
    result = PyLong_FromSsize_t(rows);
done:
    PyBuffer_Release(&text);
    PyBuffer_Release(&features);
    PyBuffer_Release(&labels);
    return result;
}

/* lines(text) -> the number of '\n' in text (memchr: a row of NT3 is ~620 KB, so a block's
 * few dozen newlines are found at memory speed; bytes.count is ~10x slower here). */
static PyObject *fastcsv_lines(PyObject *self, PyObject *arg)
{
    Py_buffer text;
    if (PyObject_GetBuffer(arg, &text, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *p = (const char *)text.buf, *end = p + text.len;
    Py_ssize_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        count++;
        p++;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&text);
    return PyLong_FromSsize_t(count);
}

static PyMethodDef methods[] = {
    {"lines", fastcsv_lines, METH_O, "lines(text) -> the number of newlines in text."},
    {"parse", fastcsv_parse, METH_VARARGS,
     "parse(text, features, labels, width) -> rows: plain CSV lines into float32 features "
     "(columns 2..width) and float64 labels (column 1); ValueError names the offset of "
     "anything else."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcsv",
                                    "Plain numeric CSV lines parsed in one pass.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__fastcsv(void) { return PyModule_Create(&module); }
