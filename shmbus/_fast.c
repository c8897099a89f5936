/* The Python API's shortest paths, in C: Producer.send of one bytes value to a
 * one-partition topic, Consumer.poll of a delivery fetched before,
 * Message.value of a message still held, and the two halves of shmbus.Queue (a
 * send that does not wait, a take-copy-ack of what is there now).  Each does
 * what the Python method does on that path and hands every other case to the
 * Python method named *_general (Queue's: to the caller's long way), so the
 * rules live in one place.  The C core is reached through function pointers
 * taken from the cffi module (one copy of the core per process).  Nothing here
 * writes shared memory except through the core. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>

typedef int64_t (*send_value_fn)(void *producer, uint32_t partition, const char *value, uint64_t len);
typedef int (*take_copy_fn)(void *consumer, uint64_t *delivery, uint32_t max, char *buf,
                            uint64_t cap, int64_t timeout_ns, int64_t spin_ns, uint32_t *copied);

static send_value_fn send_value;
static take_copy_fn take_copy;
static PyTypeObject *offset_type;  /* shmbus.Offset, a tuple subclass */
static PyTypeObject *message_type; /* shmbus.Message, a subclass of MessageBase */
static Py_ssize_t FIELDS, D_PARTITION, D_AT, D_VLEN, D_KLEN, D_FLAGS;
static PyObject *str_send_general, *str_poll_general, *str_value_general;

typedef struct {
    PyObject_HEAD
    uintptr_t raw;      /* the core's handle; 0 once closed or orphaned by a fork */
    char single;        /* producer: the topic has one partition */
    PyObject *flat;     /* consumer: the delivery records of the last fetch (uint64s), or () */
    Py_ssize_t i, n;    /* consumer: next fetched delivery to hand out, end of them */
    Py_ssize_t held;    /* consumer: first delivery handed out since the fetch */
    char **bases;       /* consumer: where each partition is mapped */
    Py_ssize_t nbases;
    uint64_t *take_out; /* consumer: _take_now's delivery fields and copy buffer (kept alive */
    char *take_buf;     /* by the Python object), or NULL */
    Py_ssize_t take_cap;
} CoreObject;

typedef struct {
    PyObject_HEAD
    PyObject *c;        /* the consumer */
    PyObject *f;        /* the delivery records of the fetch that brought this message */
    Py_ssize_t i;       /* where this message's fields start in f */
} MessageObject;

static PyObject *general(PyObject *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    PyObject *method = PyObject_GetAttr(self, name);
    if (method == NULL)
        return NULL;
    PyObject *r = PyObject_Vectorcall(method, args, nargs, kwnames);
    Py_DECREF(method);
    return r;
}

/* -- Core: the base of Handle ------------------------------------------------- */

static PyObject *core_send(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 1 && kwnames == NULL && self->raw && self->single && send_value != NULL
        && PyBytes_CheckExact(args[0])) {
        PyObject *value = args[0];
        int64_t r = send_value((void *)self->raw, 0, PyBytes_AS_STRING(value),
                               (uint64_t)PyBytes_GET_SIZE(value));
        if (r >= 0) {
            PyObject *offset = offset_type->tp_alloc(offset_type, 2);
            if (offset == NULL)
                return NULL;
            PyTuple_SET_ITEM(offset, 0, PyLong_FromLong(0));
            PyObject *at = PyLong_FromLongLong(r);
            if (at == NULL) {
                Py_DECREF(offset);
                return NULL;
            }
            PyTuple_SET_ITEM(offset, 1, at);
            return offset;
        }
    }
    return general((PyObject *)self, str_send_general, args, nargs, kwnames);
}

static PyObject *new_message(PyObject *consumer, PyObject *fields, Py_ssize_t i)
{
    if (message_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "shmbus._fast.setup() was not called");
        return NULL;
    }
    MessageObject *m = (MessageObject *)message_type->tp_alloc(message_type, 0);
    if (m == NULL)
        return NULL;
    Py_INCREF(consumer);
    m->c = consumer;
    Py_INCREF(fields);
    m->f = fields;
    m->i = i;
    return (PyObject *)m;
}

static int plain_timeout(PyObject *t)
{
    /* None or a number >= 0: anything else takes the general path, which checks it */
    if (t == Py_None)
        return 1;
    if (PyFloat_CheckExact(t))
        return PyFloat_AS_DOUBLE(t) >= 0;
    if (PyLong_CheckExact(t)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(t, &overflow);
        return overflow > 0 || (overflow == 0 && v >= 0);
    }
    return 0;
}

static PyObject *core_poll(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (self->i < self->n && kwnames == NULL && nargs <= 1 && (nargs == 0 || plain_timeout(args[0]))
        && self->flat != NULL) {
        Py_ssize_t i = self->i;
        self->held = i;
        self->i = i + FIELDS;
        return new_message((PyObject *)self, self->flat, i);
    }
    return general((PyObject *)self, str_poll_general, args, nargs, kwnames);
}

/* Queue.put: one bytes value to a one-partition topic, without waiting: the
 * offset, or the core's code (nothing published); the caller goes the long way. */
static PyObject *core_send_now(CoreObject *self, PyObject *value)
{
    if (!self->raw || !self->single || send_value == NULL || !PyBytes_CheckExact(value))
        return PyLong_FromLong(-1000);
    return PyLong_FromLongLong(send_value((void *)self->raw, 0, PyBytes_AS_STRING(value),
                                          (uint64_t)PyBytes_GET_SIZE(value)));
}

/* Queue.get: what is there now, taken, copied out and acknowledged by the core
 * in one call: the value and key as one bytes; otherwise the core's code (0:
 * nothing there; 1: taken, not copied: to finish the long way). */
static PyObject *core_take_now(CoreObject *self, PyObject *unused)
{
    if (!self->raw || self->take_out == NULL || take_copy == NULL)
        return PyLong_FromLong(-1000);
    uint32_t copied;
    int r = take_copy((void *)self->raw, self->take_out, 1, self->take_buf, (uint64_t)self->take_cap,
                      0, 0, &copied);
    if (r != 1 || copied != 1)
        return PyLong_FromLong(r);
    uint64_t len = self->take_out[D_VLEN] + self->take_out[D_KLEN];
    return PyBytes_FromStringAndSize(self->take_buf, (Py_ssize_t)len);
}

static PyObject *core_set_take(CoreObject *self, PyObject *args)
{
    PyObject *out, *buf;
    Py_ssize_t cap;
    if (!PyArg_ParseTuple(args, "OOn", &out, &buf, &cap))
        return NULL;
    uint64_t *o = PyLong_AsVoidPtr(out);
    char *b = PyLong_AsVoidPtr(buf);
    if (PyErr_Occurred())
        return NULL;
    self->take_out = o;
    self->take_buf = b;
    self->take_cap = cap;
    Py_RETURN_NONE;
}

static PyObject *core_set_bases(CoreObject *self, PyObject *addresses)
{
    PyObject *seq = PySequence_Fast(addresses, "_set_bases takes a sequence of addresses");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    char **bases = PyMem_Calloc(n ? (size_t)n : 1, sizeof(char *));
    if (bases == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        bases[k] = (char *)PyLong_AsVoidPtr(PySequence_Fast_GET_ITEM(seq, k));
        if (PyErr_Occurred()) {
            PyMem_Free(bases);
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    PyMem_Free(self->bases);
    self->bases = bases;
    self->nbases = n;
    Py_RETURN_NONE;
}

static int core_traverse(CoreObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->flat);
    return 0;
}

static int core_clear(CoreObject *self)
{
    Py_CLEAR(self->flat);
    return 0;
}

static void core_dealloc(CoreObject *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    PyMem_Free(self->bases);
    self->bases = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef core_methods[] = {
    {"_send_fast", (PyCFunction)(void (*)(void))core_send, METH_FASTCALL | METH_KEYWORDS,
     "send($self, value, key=None, headers=None, partition=None, msg_id=None, timeout=None)\n--\n\n"
     "Producer.send: see _send_general for what it does."},
    {"_poll_fast", (PyCFunction)(void (*)(void))core_poll, METH_FASTCALL | METH_KEYWORDS,
     "poll($self, timeout=None)\n--\n\nConsumer.poll: see _poll_general for what it does."},
    {"_set_bases", (PyCFunction)core_set_bases, METH_O,
     "Where each partition of the consumer's topic is mapped (addresses as ints)."},
    {"_send_now", (PyCFunction)core_send_now, METH_O,
     "_send_now(value): Queue.put's send that does not wait (offset, or the core's code)."},
    {"_take_now", (PyCFunction)core_take_now, METH_NOARGS,
     "_take_now(): Queue.get's take of what is there now (bytes, or the core's code)."},
    {"_set_take", (PyCFunction)core_set_take, METH_VARARGS,
     "_set_take(fields address, buffer address, capacity): where _take_now works."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"_raw", T_ULONG, offsetof(CoreObject, raw), 0, "the core's handle as an address; 0 when closed"},
    {"_single", T_BOOL, offsetof(CoreObject, single), 0, NULL},
    {"_flat", T_OBJECT, offsetof(CoreObject, flat), 0, NULL},
    {"_i", T_PYSSIZET, offsetof(CoreObject, i), 0, NULL},
    {"_n", T_PYSSIZET, offsetof(CoreObject, n), 0, NULL},
    {"_held", T_PYSSIZET, offsetof(CoreObject, held), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmbus._fast.Core",
    .tp_basicsize = sizeof(CoreObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "What producers and consumers keep where C reads it.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
    .tp_members = core_members,
};

/* -- MessageBase: the base of Message -------------------------------------- */

static PyObject *message_value(MessageObject *self, void *closure)
{
    CoreObject *c = (CoreObject *)self->c;
    PyObject *f = self->f;
    /* held (fetched by the consumer's last fetch, not released by a later poll)
     * and with no flag (kept for this group): the bytes are there to copy */
    if (c != NULL && PyObject_TypeCheck(self->c, &CoreType) && f != NULL && f == c->flat
        && self->i >= c->held && PyObject_CheckBuffer(f)) {
        Py_buffer fields;
        if (PyObject_GetBuffer(f, &fields, PyBUF_SIMPLE) < 0)
            return NULL;
        PyObject *r = NULL;
        if ((self->i + FIELDS) * (Py_ssize_t)sizeof(uint64_t) <= fields.len) {
            const uint64_t *d = (const uint64_t *)fields.buf + self->i;
            uint64_t part = d[D_PARTITION], len = d[D_VLEN];
            if (d[D_FLAGS] == 0 && part < (uint64_t)c->nbases && len <= PY_SSIZE_T_MAX)
                r = PyBytes_FromStringAndSize(c->bases[part] + d[D_AT], (Py_ssize_t)len);
        }
        PyBuffer_Release(&fields);
        if (r != NULL || PyErr_Occurred())
            return r;
    }
    return general((PyObject *)self, str_value_general, NULL, 0, NULL);
}

static void message_dealloc(MessageObject *self)
{
    Py_CLEAR(self->c);
    Py_CLEAR(self->f);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyGetSetDef message_getset[] = {
    {"value", (getter)message_value, NULL, "The value, copied out of the ring (bytes).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef message_members[] = {
    {"_c", T_OBJECT_EX, offsetof(MessageObject, c), 0, NULL},
    {"_f", T_OBJECT_EX, offsetof(MessageObject, f), 0, NULL},
    {"_i", T_PYSSIZET, offsetof(MessageObject, i), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject MessageBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmbus._fast.MessageBase",
    .tp_basicsize = sizeof(MessageObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Where a message's fields are: its consumer, the fetch's fields, its index.",
    .tp_dealloc = (destructor)message_dealloc,
    .tp_getset = message_getset,
    .tp_members = message_members,
};

/* -- the module ------------------------------------------------------------ */

static PyObject *fast_message(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "message(consumer, fields, index)");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[2]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    return new_message(args[0], args[1], i);
}

static PyObject *fast_setup(PyObject *module, PyObject *args)
{
    PyObject *message, *offset, *send, *take;
    if (!PyArg_ParseTuple(args, "O!O!(OO)(nnnnnn)", &PyType_Type, &message, &PyType_Type, &offset,
                          &send, &take, &FIELDS, &D_PARTITION, &D_AT, &D_VLEN, &D_KLEN, &D_FLAGS))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)message, &MessageBaseType)
        || !PyType_IsSubtype((PyTypeObject *)offset, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "setup(Message, Offset, (send_value, take_copy), fields)");
        return NULL;
    }
    send_value = (send_value_fn)PyLong_AsVoidPtr(send);
    take_copy = (take_copy_fn)PyLong_AsVoidPtr(take);
    if (PyErr_Occurred())
        return NULL;
    Py_INCREF(message);
    Py_XSETREF(message_type, (PyTypeObject *)message);
    Py_INCREF(offset);
    Py_XSETREF(offset_type, (PyTypeObject *)offset);
    Py_RETURN_NONE;
}

static PyMethodDef fast_functions[] = {
    {"setup", fast_setup, METH_VARARGS,
     "setup(Message, Offset, (shmbus_send_value address, shmbus_take_copy address), "
     "(FIELDS, PARTITION, VALUE_AT, VALUE_LEN, KEY_LEN, FLAGS))"},
    {"message", (PyCFunction)(void (*)(void))fast_message, METH_FASTCALL,
     "message(consumer, fields, index): a new Message."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fast_module = {
    PyModuleDef_HEAD_INIT, "shmbus._fast", "The Python API's shortest paths, in C.", -1, fast_functions,
};

PyMODINIT_FUNC PyInit__fast(void)
{
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&MessageBaseType) < 0)
        return NULL;
    str_send_general = PyUnicode_InternFromString("_send_general");
    str_poll_general = PyUnicode_InternFromString("_poll_general");
    str_value_general = PyUnicode_InternFromString("_value_general");
    if (!str_send_general || !str_poll_general || !str_value_general)
        return NULL;
    PyObject *m = PyModule_Create(&fast_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CoreType);
    Py_INCREF(&MessageBaseType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0
        || PyModule_AddObject(m, "MessageBase", (PyObject *)&MessageBaseType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
